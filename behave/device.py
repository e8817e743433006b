"""Where behave runs: the one place that picks the device, the training precision and what the
service asks its scheduler for.

``BEHAVE_DEVICE`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) overrides the choice everywhere;
``auto`` (the default) means CUDA when torch sees a GPU, else CPU. bf16 is used only where it is
safe: on a CUDA device that supports it, and only for families whose task says
``bf16_safe = True`` (the transformers; recurrent scans and Gumbel masks stay in fp32).
"""

from __future__ import annotations

import logging
import os

import torch

from behave.errors import ConfigError

__all__ = [
    "DEVICE_ENV",
    "bf16_supported",
    "default_precision",
    "resolve_device",
    "service_resources",
]

log = logging.getLogger(__name__)
DEVICE_ENV = "BEHAVE_DEVICE"


def resolve_device(requested: str | None = None) -> torch.device:
    """The device to load models on: ``requested``, else ``$BEHAVE_DEVICE``, else auto.

    Raises ConfigError (a ValueError) naming the setting when it asks for a device this machine lacks."""
    choice = (requested or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    source = "requested device" if requested else DEVICE_ENV
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise ConfigError(f"{source}={choice!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{source}={choice!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{source}={choice!r} but torch sees no CUDA device; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{source}={choice!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 matmuls are native (Ampere and newer CUDA GPUs)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def default_precision(accelerator: str | None, bf16_safe: bool) -> str:
    """Lightning ``precision`` for a run whose config leaves it unset.

    ``bf16-mixed`` when the run will be on a bf16-capable GPU and the family is bf16-safe, else
    ``32-true``. An explicit ``precision`` in the config always wins (the CLI only fills a gap)."""
    accelerator = (accelerator or "auto").lower()
    if not bf16_safe or accelerator not in ("auto", "gpu", "cuda"):
        return "32-true"
    return "bf16-mixed" if bf16_supported(resolve_device()) else "32-true"


def service_resources() -> dict[str, object]:
    """What the BentoML service declares: one GPU where the service will use one, else a CPU.

    Declared from the same choice as :func:`resolve_device`, so a GPU host schedules the service
    onto a GPU and a CPU host still starts it (BentoML refuses to start a service that declares a
    GPU the machine lacks)."""
    try:
        device = resolve_device()
    except ValueError:
        device = torch.device("cpu")  # the service reports the bad setting itself at start-up
    return {"gpu": 1} if device.type == "cuda" else {"cpu": "1"}
