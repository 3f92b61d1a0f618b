"""The rule protocol's entry point ``step`` and its deprecated name ``update`` (which returns parameters,
not updates: the rename says so)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.functional import inner_loop, split_state
from fewshot.rules import SGD, UpdateRule


class _Half(UpdateRule):
    def forward(self, grads, state, params, *, step, loss):
        return {n: -0.5 * g for n, g in grads.items()}, state


def _grads_state_params():
    params = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    return {"w": torch.tensor([0.5, 4.0], dtype=torch.float64)}, {}, params


def test_step_adds_the_rules_updates_and_update_is_a_warning_alias():
    grads, state, params = _grads_state_params()
    new, _ = _Half().step(grads, state, params, step=0, loss=torch.zeros(()))
    assert torch.equal(new["w"], torch.tensor([0.75, -4.0], dtype=torch.float64))  # 1 - 0.25, -2 - 2
    with pytest.warns(DeprecationWarning, match=r"UpdateRule.update is deprecated: call rule.step"):
        old, _ = _Half().update(grads, state, params, step=0, loss=torch.zeros(()))
    assert torch.equal(old["w"], new["w"])
    sgd = SGD(["w"], 0.5, dtype=torch.float64)  # SGD's fused step is reached through the alias as well
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert torch.equal(sgd.update(grads, state, params, step=0, loss=torch.zeros(()))[0]["w"], new["w"])


def test_a_rule_that_overrides_the_old_name_still_drives_the_inner_loop():
    with pytest.warns(DeprecationWarning, match="_Legacy overrides UpdateRule.update, the deprecated name of step"):
        class _Legacy(UpdateRule):
            def update(self, grads, state, params, *, step, loss):
                return {n: params[n] - 0.5 * grads[n] for n in params}, state

    torch.manual_seed(0)  # test-only: module init
    model = nn.Linear(2, 1).double()
    params, buffers = split_state(model)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(4, 1, generator=g, dtype=torch.float64)
    kw = dict(loss_fn=F.mse_loss, steps=2, names=list(params))
    legacy = inner_loop(model, params, buffers, x, y, rule=_Legacy(), **kw)
    plain = inner_loop(model, params, buffers, x, y, rule=_Half(), **kw)
    assert all(torch.allclose(legacy.at(2)[n], plain.at(2)[n], atol=1e-14, rtol=0) for n in params)
    assert not torch.equal(legacy.at(2)["weight"], params["weight"])
