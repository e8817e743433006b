import pytest
import torch

from behave.tasks.dro import GroupDRO

COUNTS = torch.tensor([0, 0, 1000, 800, 50, 40, 5, 3])  # groups by rank: 0 = head ... 3 = tail


def test_weights_shift_toward_the_worst_group():
    dro = GroupDRO(COUNTS, num_groups=4, step_size=0.5).train()
    # 6 seen types in 4 groups by frequency rank: types 2,3 -> 0; 4 -> 1; 5,6 -> 2; 7 -> 3
    assert dro.group_of_type[2:].tolist() == [0, 0, 1, 2, 2, 3]
    targets = torch.tensor([2, 3, 4, 5, 6, 7])
    losses = torch.tensor([0.1, 0.1, 0.5, 2.5, 2.5, 1.0])  # group means 0.1, 0.5, 2.5, 1.0
    for _ in range(5):
        dro(losses, targets)
    w = dro.weights
    assert w.sum().item() == pytest.approx(1.0)
    assert int(w.argmax()) == 2  # the worst group gains weight ...
    assert w[2] > 0.25 > float(w[0])  # ... at the expense of the best one
    # weights end up ordered like the group losses
    assert torch.argsort(w).tolist() == torch.argsort(torch.tensor([0.1, 0.5, 2.5, 1.0])).tolist()


def test_loss_is_the_weighted_group_mean_mixed_with_erm():
    dro = GroupDRO(COUNTS, num_groups=4, step_size=0.0, mix=0.5).train()
    targets = torch.tensor([2, 4, 6])
    losses = torch.tensor([1.0, 2.0, 3.0])
    loss = dro(losses, targets)
    group_means = torch.tensor([1.0, 2.0, 3.0, 0.0])
    robust = (torch.full((4,), 0.25) * group_means).sum()
    assert loss.item() == pytest.approx(0.5 * 2.0 + 0.5 * robust.item())


def test_rarity_margin_is_larger_for_rare_groups():
    dro = GroupDRO(COUNTS, num_groups=4, adjustment=1.0)
    assert dro.margin[0] < dro.margin[1] < dro.margin[2]


def test_eval_mode_does_not_update_weights():
    dro = GroupDRO(COUNTS, num_groups=4, step_size=1.0).eval()
    dro(torch.tensor([5.0]), torch.tensor([7]))
    assert torch.allclose(dro.weights, torch.full((4,), 0.25))
