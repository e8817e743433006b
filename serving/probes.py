"""The behavior probes the service loads at start-up: every ``behave.probe.*@champion`` (or the
local bundle named by ``BEHAVE_PROBE_BUNDLE``). Each bundle carries the model weights it reads,
so a probe keeps scoring with the hidden space it was trained on whatever version serves
``/next_behavior``. A probe that fails to load is logged and skipped; the rest still serve."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadedProbe", "load_probes"]

log = logging.getLogger("behave.serving")

PROBE_BUNDLE_ENV = "BEHAVE_PROBE_BUNDLE"


@dataclass
class LoadedProbe:
    predictor: object  # behave.inference.probe.ProbePredictor
    version: str

    def info(self) -> dict:
        p = self.predictor.probe
        from behave.inference.probe import THRESHOLD

        return {
            "label": self.predictor.label,
            "layer": p.layer,
            "auroc": p.metrics.get("auroc"),
            "probe_version": self.version,
            "reads_model": str(p.info.get("reads_model", "")),
            "reads_version": str(p.info.get("reads_version", "")),
            "threshold": THRESHOLD,
        }


def _found() -> dict[str, tuple[Path, str]]:
    local = os.environ.get(PROBE_BUNDLE_ENV)
    if local:
        meta = json.loads((Path(local) / "config.json").read_text())
        return {f"{meta['model_family']}.{meta['behavior_family']}": (Path(local), "local")}
    from behave import tracking

    try:
        families = tracking.families_with_prefix("probe")
    except Exception as err:  # an unreachable registry must not take the other families down
        log.error("cannot list probes in the registry: %s", err)
        return {}
    found = {}
    for family in families:
        name = family.removeprefix("probe.")
        try:
            version = tracking.get_version(family, "champion")
            found[name] = (
                tracking.resolve_model_dir(f"models:/behave.{family}/{version.version}"),
                str(version.version),
            )
        except (LookupError, FileNotFoundError) as err:
            log.warning("probe %s not served: %s", name, err)
    return found


def load_probes(device: str) -> dict[str, LoadedProbe]:
    from behave.inference.probe import ProbePredictor

    loaded = {}
    for name, (path, version) in _found().items():
        try:
            predictor = ProbePredictor.from_dir(path, device)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            log.error("probe %s (version %s) refused at load: %s", name, version, err)
            continue
        loaded[name] = LoadedProbe(predictor, version)
        log.info("probe %s version %s on %s: %s", name, version, device, predictor.label)
    return loaded
