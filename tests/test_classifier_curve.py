"""benchmarks/classifier_curve.py: a recipe's per-epoch curve on a benchmark split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.classifier_curve import main  # noqa: E402


def test_prints_each_epoch_and_the_best_epochs_test_accuracy(tmp_path, capsys):
    from behave.data.timeseries import generate_timeseries_synth

    generate_timeseries_synth(
        tmp_path / "freqshapes-split0" / "data", "freqshapes", seed=0,
        num_train=64, num_val=16, num_test=32,
    )  # fmt: skip
    main(["--dataset", "freqshapes", "--split", "0", "--epochs", "2",
          "--set", "num_heads=2", "d_model=32", "--work-dir", str(tmp_path)])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    epochs = [line for line in lines if line.startswith("freqshapes-split0: epoch")]
    assert [line.split()[2] for line in epochs] == ["1/2", "2/2"]
    assert all("val/loss" in line and "val/accuracy" in line for line in epochs)
    result = json.loads(lines[-1])
    assert result["overrides"] == {"num_heads": 2, "d_model": 32}
    assert result["epochs"] == 2
    assert 0.0 <= result["test_accuracy"] <= 1.0


def test_names_the_missing_split_and_a_bad_override(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--dataset", "freqshapes", "--split", "7", "--work-dir", str(tmp_path)])
    assert "run benchmarks/explainers.py on this split first" in capsys.readouterr().err
    (tmp_path / "freqshapes-split0" / "data").mkdir(parents=True)
    (tmp_path / "freqshapes-split0" / "data" / "manifest.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["--dataset", "freqshapes", "--split", "0", "--set", "num_heads",
              "--work-dir", str(tmp_path)])  # fmt: skip
    assert "--set 'num_heads': expected KEY=VALUE" in capsys.readouterr().err
