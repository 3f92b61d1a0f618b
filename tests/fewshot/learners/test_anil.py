"""ANIL and BOIL: which parameters the inner loop moves, the meta-gradient against MAML with the
other part excluded (an independent route to the same adapted names), the head choice and its
errors, learning."""
import copy

import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.learners import ANIL, MAML, ANILConfig, MAMLConfig, build_learner
from fewshot.nn import Conv4
from tests.fewshot.learners.tasks import cls_batch, sinusoid_mse_before_after, vector_batch


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                         nn.Linear(8, 3)).double()


_batch = vector_batch


HEAD = ("4.weight", "4.bias")


@pytest.mark.parametrize("name, moved",
                         [("anil", set(HEAD)),
                          ("boil", {"0.weight", "0.bias", "2.weight", "2.bias"})])
def test_the_inner_loop_moves_only_the_head_anil_or_only_the_body_boil(name, moved):
    learner = build_learner(name, _mlp(), {"inner_steps": 3, "inner_lr": 0.5})
    assert set(learner.names) == moved
    t = _batch().task(0)
    adapted = learner.adapt(t.support_x, t.support_y)
    for pname, p in learner.model.named_parameters():
        changed = not torch.equal(adapted.params[pname], p)
        assert changed == (pname in moved), pname  # hand check: the other part is bit-identical


@pytest.mark.parametrize("name, no_adapt", [("anil", ("0.", "2.")), ("boil", ("4.",))])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_meta_gradient_equals_maml_with_the_other_part_excluded(name, no_adapt, first_order,
                                                                batching):
    cfg = dict(inner_steps=2, inner_lr=0.3, first_order=first_order, task_batching=batching)
    ours = build_learner(name, _mlp(1), cfg)
    ref = MAML(copy.deepcopy(_mlp(1)), MAMLConfig(**cfg, no_adapt=no_adapt))
    assert ours.names == ref.names
    batch = _batch(2)
    a, b = ours.meta_loss(batch), ref.meta_loss(batch)
    ga = torch.autograd.grad(a.loss, list(ours.parameters()))
    gb = torch.autograd.grad(b.loss, list(ref.parameters()))
    assert a.loss.item() == pytest.approx(b.loss.item(), abs=1e-12)
    assert all(g.abs().max() > 0 for g in ga)  # body and head are both meta-learned
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-12, rtol=0)


def test_default_head_is_the_last_linear_and_a_prefix_can_name_it():
    learner = ANIL(Conv4(1, 3, hidden=4, image_size=16).double(), ANILConfig())
    assert learner.head == "classifier" and learner.names == ["classifier.weight",
                                                              "classifier.bias"]
    boil = build_learner("boil", Conv4(1, 3, hidden=4, image_size=16).double())
    assert boil.head == "classifier" and not any(n.startswith("classifier") for n in boil.names)
    # norm affines stay meta-learned only
    assert all(".bn" not in n and "norm" not in n for n in boil.names)
    wide = ANIL(_mlp(), ANILConfig(head="2"))  # an explicit module: its parameters only
    assert wide.names == ["2.weight", "2.bias"]
    assert ANIL(_mlp(), ANILConfig(head="4.")).names == list(HEAD)
    learner.meta_loss(cls_batch(0, size=16)).loss.backward()


def test_a_config_instance_keeps_the_registry_names_part():
    assert build_learner("boil", _mlp(), ANILConfig()).config.part == "body"
    assert build_learner("anil", _mlp(), ANILConfig(part="body")).config.part == "head"


def test_bad_settings_get_one_clear_error_each():
    with pytest.raises(ConfigError, match="part must be 'head' \\(ANIL\\) or 'body' \\(BOIL\\)"):
        ANILConfig(part="neck")
    with pytest.raises(ConfigError, match="head must be a module name"):
        ANILConfig(head="")
    with pytest.raises(ConfigError, match="head='fc' matches no trainable parameter of Sequential"):
        ANIL(_mlp(), ANILConfig(head="fc"))
    with pytest.raises(ConfigError, match="has no nn.Linear with trainable parameters"):
        ANIL(nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten()), ANILConfig())
    with pytest.raises(ConfigError, match="BOIL: the body .* has no parameter left to adapt"):
        build_learner("boil", nn.Linear(4, 3))
    with pytest.raises(ConfigError, match="ANIL: the head '4' has no parameter left to adapt"):
        ANIL(_mlp(), ANILConfig(no_adapt=("4.",)))


@pytest.mark.slow
def test_anil_learns_sinusoid_regression(one_thread):
    before, after = sinusoid_mse_before_after("anil", {"inner_lr": 0.1},
                                              lambda ps: torch.optim.Adam(ps, 3e-3))
    assert after < 0.5 * before, (before, after)
