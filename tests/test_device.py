"""Device, precision and service-resource selection (behave/device.py, the CLI's defaults),
tested on CPU by making torch report a GPU: the GPU paths' choices are covered where no GPU is."""

from __future__ import annotations

import pytest
import torch
from jsonargparse import Namespace

from behave.cli import fill_device_defaults
from behave.device import default_precision, resolve_device, service_resources
from behave.errors import ConfigError


@pytest.fixture
def gpu(monkeypatch):
    """torch reports two bf16-capable CUDA devices (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("BEHAVE_DEVICE", raising=False)


def test_auto_is_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu")
    assert service_resources() == {"cpu": "1"}
    assert default_precision("auto", bf16_safe=True) == "32-true"


def test_auto_is_cuda_with_a_gpu(gpu):
    assert resolve_device() == torch.device("cuda")
    assert service_resources() == {"gpu": 1}


def test_env_pins_the_device(gpu, monkeypatch):
    monkeypatch.setenv("BEHAVE_DEVICE", "cuda:1")
    assert resolve_device() == torch.device("cuda:1")
    monkeypatch.setenv("BEHAVE_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    assert service_resources() == {"cpu": "1"}  # a GPU host can still serve on CPU
    assert default_precision("auto", bf16_safe=True) == "32-true"


@pytest.mark.parametrize(
    "setting, words",
    [
        ("tpu", "expected auto, cpu, cuda or cuda:N"),
        ("cuda:7", "only 2 CUDA device(s) exist"),
        ("nonsense:x", "expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_settings_name_the_variable(gpu, monkeypatch, setting, words):
    monkeypatch.setenv("BEHAVE_DEVICE", setting)
    with pytest.raises(ConfigError, match="BEHAVE_DEVICE") as err:
        resolve_device()
    assert words in str(err.value)


def test_cuda_asked_on_a_cpu_machine_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA device; use auto or cpu"):
        resolve_device("cuda")


def test_bf16_only_for_safe_families_on_bf16_gpus(gpu, monkeypatch):
    assert default_precision("auto", bf16_safe=True) == "bf16-mixed"
    assert default_precision("gpu", bf16_safe=True) == "bf16-mixed"
    assert default_precision("auto", bf16_safe=False) == "32-true"  # scans, LSTMs, Gumbel masks
    assert default_precision("cpu", bf16_safe=True) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # pre-Ampere
    assert default_precision("auto", bf16_safe=True) == "32-true"


def _config(task: str, accelerator="auto", precision=None) -> Namespace:
    return Namespace(
        trainer=Namespace(accelerator=accelerator, devices=1, precision=precision),
        model=Namespace(class_path=task),
    )


def test_cli_fills_only_what_the_config_leaves_open(gpu, monkeypatch):
    gpt = _config("behave.tasks.behavegpt.BehaveGPTTask")
    fill_device_defaults(gpt)
    assert (gpt.trainer.accelerator, gpt.trainer.precision) == ("gpu", "bf16-mixed")

    mamba = _config("behave.tasks.decision_mamba.OfflineRLTask")
    fill_device_defaults(mamba)
    assert (mamba.trainer.accelerator, mamba.trainer.precision) == ("gpu", "32-true")

    pinned = _config("behave.tasks.behavegpt.BehaveGPTTask", accelerator="cpu", precision="64-true")
    fill_device_defaults(pinned)
    assert (pinned.trainer.accelerator, pinned.trainer.precision) == ("cpu", "64-true")

    monkeypatch.setenv("BEHAVE_DEVICE", "cuda:1")
    second = _config("behave.tasks.neuroformer.NeuroformerTask")
    fill_device_defaults(second)
    assert (second.trainer.accelerator, second.trainer.devices) == ("gpu", [1])
    assert second.trainer.precision == "bf16-mixed"


def test_service_declares_what_behave_device_chooses():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from serving.service import BehaveService

    assert BehaveService.config["resources"] == service_resources()
