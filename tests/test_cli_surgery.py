"""`behave surgery` end to end on a tiny BehaveGPT: probe, edit, evaluate, register with
lineage, reproduce the edit from the registry, gate it with `behave promote`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_cli import (  # noqa: F401 - the fixtures are found by name
    TINY,
    _no_global_store,
    behave,
    workdir,
)

pytestmark = pytest.mark.slow

FAMILY = "churn"


@pytest.fixture(scope="module")
def trained(workdir) -> Path:  # noqa: F811 - the fixture imported above
    """test_cli's tiny generated log, with a BehaveGPT trained and registered as v1."""
    # module-scoped: runs before the autouse fixture, so clear a store URI that an earlier
    # in-process MLflow call left in the environment (the fit must use ./mlflow)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        behave("fit", "--config", str(TINY), cwd=workdir)
    return workdir


def _client(root: Path):
    import mlflow

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _bundle(name: str, version: str) -> Path:
    from behave import tracking

    return tracking.resolve_model_dir(f"models:/{name}/{version}")


def test_surgery_registers_a_reproducible_edit_with_lineage_then_promote_gates_it(
    trained, monkeypatch
):
    out = behave(
        "surgery", "--behavior-family", FAMILY, "--alpha", "2", "4", "--top-k", "8", "16",
        cwd=trained,
    ).stdout  # fmt: skip
    assert "family_top1_rate" in out and "recall_at_10_other" in out
    assert "registered behave.probe.behavegpt.churn v1" in out
    assert "registered behave.behavegpt v2 (@challenger)" in out
    assert "@champion is unchanged" in out

    c = _client(trained)
    v2 = c.get_model_version("behave.behavegpt", "2")
    tags = v2.tags
    assert tags["surgery.parent_version"] == "1"
    assert tags["surgery.behavior_family"] == FAMILY
    assert tags["surgery.probe_run_id"] == v2.run_id
    assert tags["surgery.probe"] == "models:/behave.probe.behavegpt.churn/1"
    edit = json.loads(tags["surgery.edit"])
    assert edit["alpha"] in (2.0, 4.0) and edit["top_k"] in (8, 16)
    assert edit["rows_edited"] == edit["top_k"]
    assert set(json.loads(tags["surgery.before_after"])) == {"before", "after"}
    assert "eval_split" in tags
    # surgery never moves @champion
    assert str(c.get_model_version_by_alias("behave.behavegpt", "champion").version) == "1"
    assert str(c.get_model_version_by_alias("behave.behavegpt", "challenger").version) == "2"
    probe_version = c.get_model_version("behave.probe.behavegpt.churn", "1")
    assert probe_version.tags["reads_version"] == "1"
    run = c.get_run(v2.run_id)
    assert {"plots/probe_layers.png", "plots/sweep.png", "plots/before_after.png"} <= {
        a.path for a in c.list_artifacts(v2.run_id, "plots")
    }
    assert "after/family_top1_rate" in run.data.metrics

    # the edit is reproducible: the registered parent + the registered probe + the recorded
    # parameters give the registered child bit for bit, and only the planned rows differ
    from behave.explain.probes import LinearProbe
    from behave.explain.surgery import SurgeryConfig, operate
    from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained / 'mlflow' / 'mlflow.db'}")
    bundle = _bundle("behave.behavegpt", "2")
    parent = load_file(str(_bundle("behave.behavegpt", "1") / "weights.safetensors"))
    child = load_file(str(bundle / "weights.safetensors"))
    probe = LinearProbe.load(_bundle("behave.probe.behavegpt.churn", "1"))
    config = BehaveGPTConfig(**json.loads((bundle / "config.json").read_text())["model"])
    model = BehaveGPT(config)
    model.load_state_dict({**parent, "head.weight": parent["behavior_embedding.weight"]})
    plan = operate(model, probe.direction, SurgeryConfig(alpha=edit["alpha"], top_k=edit["top_k"]))
    replayed = model.state_dict()
    for name, tensor in child.items():
        assert torch.equal(replayed[name], tensor), name
        rows = plan.rows.get(name, [])
        changed = (tensor != parent[name]).reshape(len(tensor), -1).any(1).nonzero().flatten()
        assert changed.tolist() == rows, name

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the CLI finds ./mlflow on its own
    # the registered probe can drive the same edit again (no retraining), registering nothing
    again = behave(
        "surgery", "--behavior-family", FAMILY, "--probe",
        "models:/behave.probe.behavegpt.churn@champion", "--alpha", str(edit["alpha"]),
        "--top-k", str(edit["top_k"]), "--no-register", cwd=trained,
    ).stdout  # fmt: skip
    assert "registered" not in again
    after = json.loads(tags["surgery.before_after"])["after"]
    assert f"{after['family_top1_rate']:.4f}" in again

    review = behave("promote", "behavegpt", cwd=trained).stdout
    assert "family_top1_rate" in review and "decides" in review
    status = c.get_model_version("behave.behavegpt", "2").tags["validation_status"]
    assert status in ("promoted", "rejected")
    if status == "rejected":
        assert "kept v1 as @champion: " in review


def test_bad_arguments_are_one_line_errors(trained):
    proc = behave("surgery", "--behavior-family", "nope", "--no-register", cwd=trained, check=False)
    assert proc.returncode == 2
    assert "behavior family 'nope' is not in the vocabulary" in proc.stderr
    assert "churn" in proc.stderr and "Traceback" not in proc.stderr
    proc = behave("surgery", "--layers", "5", "7", "--no-register", cwd=trained, check=False)
    assert proc.returncode == 2 and "select no block" in proc.stderr
    proc = behave(
        "surgery", "--probe", "models:/behave.probe.behavegpt.churn@champion",
        "--model", "models:/behave.behavegpt/2", "--no-register", cwd=trained, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "reads behave.behavegpt v1" in proc.stderr


def test_per_block_mean_difference_direction_edits_without_registering(trained):
    proc = behave(
        "surgery", "--behavior-family", FAMILY, "--direction", "mean_difference_per_layer",
        "--alpha", "1", "--top-k", "8", "--no-register", cwd=trained,
    )  # fmt: skip
    assert "family_top1_rate" in proc.stdout and "registered" not in proc.stdout


def test_a_failed_edit_registration_takes_its_probe_back(trained, monkeypatch):
    """The probe and the edit register as a pair: when the edit's registration fails, the probe
    version registered a moment before is deleted and @challenger points where it did."""
    from behave import tracking
    from behave.surgery_pipeline import run_surgery

    monkeypatch.chdir(trained)
    # set here so that it is unset again after the test (MLflow writes it into os.environ)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained / 'mlflow' / 'mlflow.db'}")
    probe_name = f"behave.probe.behavegpt.{FAMILY}"
    c = _client(trained)
    probes_before = {v.version for v in c.search_model_versions(f"name='{probe_name}'")}
    models_before = {v.version for v in c.search_model_versions("name='behave.behavegpt'")}
    challenger_before = tracking.alias_version(f"probe.behavegpt.{FAMILY}", "challenger")
    real = tracking.register_model

    def failing_for_the_edit(run_id, family, *args, **kwargs):
        if family == "behavegpt":
            raise RuntimeError("registry went away")
        return real(run_id, family, *args, **kwargs)

    monkeypatch.setattr(tracking, "register_model", failing_for_the_edit)
    lines = []
    with pytest.raises(RuntimeError, match="registry went away"):
        run_surgery(
            "models:/behave.behavegpt/1", FAMILY, [2.0], [8],
            generation_histories=4, progress=lines.append,
        )  # fmt: skip
    assert any(line.startswith(f"registered {probe_name}") for line in lines)  # it did land
    assert any(line.startswith(f"unregistered {probe_name}") for line in lines)
    assert {v.version for v in c.search_model_versions(f"name='{probe_name}'")} == probes_before
    assert {v.version for v in c.search_model_versions("name='behave.behavegpt'")} == models_before
    assert tracking.alias_version(f"probe.behavegpt.{FAMILY}", "challenger") == challenger_before
