"""OfflineRLTask: losses go down, self-evolution schedule and ablation, rollouts."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("Box2D")

from behave.data.offline_rl import generate_offline_rl, normalized_score  # noqa: E402
from behave.data.offline_rl_datamodule import OfflineRLDataModule  # noqa: E402
from behave.errors import ConfigError  # noqa: E402
from behave.rollouts import evaluate_policy  # noqa: E402
from behave.tasks.decision_mamba import OfflineRLTask  # noqa: E402

TINY = {"d_model": 16, "num_layers": 1, "d_state": 4, "dropout": 0.0}


def _lunarlander(tmp_path_factory, quality: str) -> OfflineRLDataModule:
    out = tmp_path_factory.mktemp("rl") / f"lunarlander-{quality}"
    generate_offline_rl(out, quality=quality, num_transitions=3000, seed=2, progress=False)
    dm = OfflineRLDataModule(str(out), context_length=8, batch_size=16, windows_per_epoch=320)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    return _lunarlander(tmp_path_factory, "medium")


@pytest.fixture(scope="module")
def expert_dm(tmp_path_factory):
    """Expert data: actions are (almost) a function of the state, so imitation can fit them."""
    return _lunarlander(tmp_path_factory, "expert")


def _trainer(epochs: int, **kw) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


class AlphaSpy(L.Callback):
    def __init__(self):
        self.alphas, self.teachers = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.alphas.append(pl_module.alpha)
            self.teachers.append(bool(pl_module._teacher))


@pytest.mark.parametrize(
    "architecture", ["decision_mamba", "decision_transformer", "behavior_cloning"]
)
def test_action_loss_goes_down(expert_dm, architecture):
    dm = expert_dm
    torch.manual_seed(0)
    task = OfflineRLTask(
        dm.data_info,
        architecture,
        context_length=8,
        **TINY,
        learning_rate=3e-3,
        warmup_steps=2,
        eval_episodes=0,
    )
    trainer = _trainer(2)
    before = trainer.validate(task, datamodule=dm, verbose=False)[0]["val/action_mse"]
    trainer.fit(task, datamodule=dm)
    after = trainer.callback_metrics["val/action_mse"].item()
    assert after < 0.7 * before  # a clear drop within 40 steps


def test_self_evolution_mixes_in_the_previous_epoch_prediction(dm):
    task = OfflineRLTask(
        dm.data_info, context_length=8, **TINY, self_evolution_alpha=0.4, eval_episodes=0
    )
    spy = AlphaSpy()
    trainer = _trainer(3, limit_train_batches=2, limit_val_batches=1, callbacks=[spy])
    trainer.fit(task, datamodule=dm)
    assert spy.alphas == pytest.approx([0.0, 0.2, 0.4])  # linear from 0 to the bound
    # its reach is logged: the model has moved since the teacher was frozen (2 steps ago)
    logged = trainer.callback_metrics
    assert 0 < logged["train/teacher_gap_mse"] < logged["train/logged_action_mse"]
    assert spy.teachers == [False, True, True]
    assert not any(k.startswith("_teacher") for k in task.state_dict())  # not saved
    # the teacher is the model as the previous epoch left it: frozen, no gradient
    teacher = task._teacher[0]
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_self_evolution_off_is_plain_imitation(dm):
    task = OfflineRLTask(
        dm.data_info, context_length=8, **TINY, self_evolution=False, eval_episodes=0
    )
    spy = AlphaSpy()
    trainer = _trainer(2, limit_train_batches=2, limit_val_batches=1, callbacks=[spy])
    trainer.fit(task, datamodule=dm)
    assert spy.alphas == [0.0, 0.0] and spy.teachers == [False, False]
    assert "train/teacher_gap_mse" not in trainer.callback_metrics


def test_bad_settings_are_config_errors(dm):
    with pytest.raises(ConfigError, match="model.architecture"):
        OfflineRLTask(dm.data_info, "gpt5")
    with pytest.raises(ConfigError, match="data_info"):
        OfflineRLTask(None)
    with pytest.raises(ConfigError, match="self_evolution_alpha"):
        OfflineRLTask(dm.data_info, self_evolution_alpha=1.5)


def test_rollouts_score_in_d4rl_units(dm):
    torch.manual_seed(0)
    task = OfflineRLTask(dm.data_info, context_length=8, **TINY, eval_max_steps=25)
    result = task.rollouts(episodes=3, seed=0, num_frames=2)
    assert result.returns.shape == (3,) and (result.lengths <= 25).all()
    ref = dm.data_info["reference_returns"]
    assert np.allclose(result.scores, normalized_score(result.returns, ref))
    assert [c[-1] for c in result.cumulative] == pytest.approx(result.returns.tolist())
    assert len(result.frames) == 2 and result.frames[0].ndim == 3


def test_recurrent_and_window_rollouts_agree_within_the_context(dm):
    torch.manual_seed(0)
    task = OfflineRLTask(dm.data_info, context_length=8, **TINY).eval()
    ref = dm.data_info["reference_returns"]
    runs = [
        evaluate_policy(
            task.policy(mode), "lunarlander", ref, target_return=100.0, episodes=2, max_steps=8
        )
        for mode in ("recurrent", "window")
    ]
    assert np.allclose(runs[0].returns, runs[1].returns, atol=1e-3)


def test_rollouts_survive_a_renderer_that_fails(dm, monkeypatch, caplog):
    import behave.rollouts as rollouts

    real = rollouts.make_env

    def no_opengl(env, render=False):
        e = real(env)
        if render:

            def fail():
                raise RuntimeError("an OpenGL platform library has not been loaded")

            e.render = fail
        return e

    monkeypatch.setattr(rollouts, "make_env", no_opengl)
    task = OfflineRLTask(dm.data_info, context_length=8, **TINY, eval_max_steps=10)
    result = task.rollouts(episodes=2, seed=0, num_frames=2)
    assert result.frames == [] and result.returns.shape == (2,)
    assert "no rollout frames" in caplog.text


def test_ema_teacher_follows_the_weights_and_alpha_grows_per_step(dm):
    task = OfflineRLTask(
        dm.data_info,
        context_length=8,
        **TINY,
        self_evolution_alpha=0.4,
        self_evolution_teacher="ema",
        self_evolution_ema_decay=0.5,
        eval_episodes=0,
    )
    spy = AlphaSpy()
    _trainer(3, limit_train_batches=2, limit_val_batches=1, callbacks=[spy]).fit(
        task, datamodule=dm
    )
    assert spy.teachers == [True, True, True]  # an EMA teacher from the first step
    assert spy.alphas == sorted(spy.alphas) and spy.alphas[-1] > 0
    assert task.alpha == pytest.approx(0.4 * 5 / 6)  # the last of 6 steps: step 5 of 6
    teacher, model = task._teacher[0], task.model
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    # decay 0.5: the teacher is close to, but not equal to, the trained weights
    diffs = [
        (t - m).abs().max().item()
        for t, m in zip(teacher.parameters(), model.parameters(), strict=True)
    ]
    assert 0 < max(diffs) < 0.1
    with pytest.raises(ConfigError, match="self_evolution_teacher"):
        OfflineRLTask(dm.data_info, self_evolution_teacher="best")
