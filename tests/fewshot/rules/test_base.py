"""The rule protocol's entry point ``step`` and its deprecated name ``update`` (which returns
parameters, not updates: the rename says so)."""
import torch

from fewshot.rules import SGD, UpdateRule


class _Half(UpdateRule):
    def forward(self, grads, state, params, *, step, loss):
        return {n: -0.5 * g for n, g in grads.items()}, state


def _grads_state_params():
    params = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    return {"w": torch.tensor([0.5, 4.0], dtype=torch.float64)}, {}, params


def test_step_adds_the_rules_updates():
    grads, state, params = _grads_state_params()
    new, _ = _Half().step(grads, state, params, step=0, loss=torch.zeros(()))
    # 1 - 0.25, -2 - 2
    assert torch.equal(new["w"], torch.tensor([0.75, -4.0], dtype=torch.float64))
    sgd = SGD(["w"], 0.5, dtype=torch.float64)  # SGD's fused step gives the same numbers
    assert torch.equal(sgd.step(grads, state, params, step=0, loss=torch.zeros(()))[0]["w"],
                       new["w"])
