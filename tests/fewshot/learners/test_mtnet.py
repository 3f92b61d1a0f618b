"""MT-net / T-net: MAML equivalence at T = I and M = 1, masks (zeros, eval mode, seeded sampling and
resume), gradients to T and the logits, loop == vmap with noise, T never adapted, config,
learning."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import ConfigError
from fewshot.learners import MAML, MAMLConfig, MTNet, MTNetConfig, build_learner, learner_config
from fewshot.nn import Conv4, TransformedConv2d, TransformedLinear
from fewshot.rules import SGD, Chain, RowMask
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import meta_train
from tests.fewshot.learners.tasks import reg_batch as _reg_batch


def _mlp(seed=0):
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(),
                         nn.Linear(5, 2)).double()


def _conv(seed=0):
    torch.manual_seed(seed)  # test-only module init
    return Conv4(1, 3, hidden=4, image_size=8, blocks=2).double()


def _grads(learner, batch):
    out = learner.meta_loss(batch)
    params = dict(learner.named_parameters())
    grads = torch.autograd.grad(out.loss, list(params.values()), allow_unused=True)
    return out, {n: torch.zeros_like(p) if g is None else g
                 for (n, p), g in zip(params.items(), grads)}


def _mask_rule(learner) -> RowMask:
    assert isinstance(learner.rule, Chain) and isinstance(learner.rule.rules[0], RowMask)
    return learner.rule.rules[0]


# --------------------------------------------------------------------------- structure
def test_every_linear_and_conv_gets_an_identity_transform_with_readable_keys():
    learner = MTNet(_conv(0))
    model = learner.model
    assert isinstance(model.features[0], TransformedConv2d) and isinstance(model.classifier,
                                                                           TransformedLinear)
    assert learner.transformed == ["features.0", "features.4", "classifier"]
    keys = set(learner.state_dict())
    assert {"model.features.0.weight", "model.features.0.bias", "model.features.0.transform",
            "model.classifier.transform", "rule.rules.0.logits", "rule.rules.1.lrs",
            "noise_rng"} <= keys
    assert torch.equal(model.features[4].transform, torch.eye(4, dtype=torch.float64))
    assert learner.rule.noise_size == 4 + 4 + 3
    assert torch.all(_mask_rule(learner).logits == 0)
    assert all(not n.endswith("transform") for n in learner.names)
    assert {n for n, _ in learner.named_parameters() if n.endswith("transform")} == {
        f"model.{m}.transform" for m in learner.transformed}
    head_plain = MTNet(_conv(0), MTNetConfig(transform_last=False))
    assert type(head_plain.model.classifier) is nn.Linear and head_plain.rule.noise_size == 8


def test_identity_transform_leaves_the_function_unchanged():
    base = _conv(1)
    x = _cls_batch(2).support_x[0]
    expected = base(x)
    learner = MTNet(copy.deepcopy(base))
    assert torch.equal(learner.model(x), expected)


# --------------------------------------------------------------------------- MAML equivalence
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("variant", ["tnet", "mtnet_mask_on"])
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_with_identity_T_and_full_mask_it_equals_maml(first_order, batching, variant, net):
    base, batch = (_mlp(3), _reg_batch(4)) if net == "mlp" else (_conv(3), _cls_batch(4))
    common = dict(inner_steps=2, inner_lr=0.1, first_order=first_order, task_batching=batching)
    maml = MAML(copy.deepcopy(base), MAMLConfig(**common)).train()
    # logit 50: every sampled mask unit is 1 (it would take a U(0, 1) draw below 2e-22 to flip one)
    cfg = MTNetConfig(mask=False, **common) if variant == "tnet" else MTNetConfig(logit_init=50.0,
                                                                                  **common)
    mt = MTNet(copy.deepcopy(base), cfg).train()
    out_a, ga = _grads(maml, batch)
    out_b, gb = _grads(mt, batch)
    assert abs(out_a.loss.item() - out_b.loss.item()) < 1e-13
    for name, g in ga.items():
        assert torch.allclose(g, gb[name], atol=1e-12, rtol=0), name
    assert all(gb[n].abs().max() > 0 for n in gb if n.endswith("transform"))
    if variant == "mtnet_mask_on":
        assert mt.noise_rng is not None and gb["rule.rules.0.logits"].shape == (mt.rule.noise_size,)


# --------------------------------------------------------------------------- masks
def test_gradients_reach_T_and_the_mask_logits_and_both_are_meta_learned():
    learner = MTNet(_conv(5), MTNetConfig(inner_steps=1, inner_lr=0.5)).train()
    _, g = _grads(learner, _cls_batch(6))
    for name in ("model.features.0.transform", "model.features.4.transform",
                 "model.classifier.transform"):
        assert g[name].abs().max() > 0, name
    assert g["rule.rules.0.logits"].abs().max() > 0
    fo = MTNet(_conv(5), MTNetConfig(inner_steps=1, inner_lr=0.5, first_order=True)).train()
    _, g = _grads(fo, _cls_batch(6))  # first order: the update still depends on the mask
    assert g["rule.rules.0.logits"].abs().max() > 0


@pytest.mark.parametrize("training", [True, False])
def test_a_zero_mask_adapts_nothing(training):
    learner = MTNet(_conv(7), MTNetConfig(inner_steps=2, logit_init=-50.0)).train(training)
    batch = _cls_batch(8)
    t = batch.task(0)
    params = learner.adapt(t.support_x, t.support_y).params
    for name, p in learner.model.named_parameters():
        assert torch.equal(params[name], p), name
    # in training mode the sampled masks are all zero too: the meta-loss is the unadapted query loss
    out = learner.meta_loss(batch)
    expected = sum(
        F.cross_entropy(learner.predict(batch.query_x[i], dict(learner.model.named_parameters())),
                                   batch.query_y[i]) for i in range(len(batch))) / len(batch)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-13)


def test_eval_mask_is_the_most_likely_one_and_masks_whole_output_units():
    learner = MTNet(_mlp(9), MTNetConfig(inner_lr=0.3)).eval()
    rule = _mask_rule(learner)
    with torch.no_grad():
        rule.logits.copy_(torch.linspace(-1, 1, rule.noise_size, dtype=torch.float64))
    expected_mask = (rule.logits >= 0).double()
    assert torch.equal(rule.mask(None), expected_mask)
    t = _reg_batch(10).task(0)
    model = learner.model
    grads = dict(zip([n for n, _ in model.named_parameters()],
                     torch.autograd.grad(F.mse_loss(model(t.support_x), t.support_y),
                                         list(model.parameters()))))
    params = learner.adapt(t.support_x, t.support_y).params
    start = 0
    for layer in ("0", "2", "4"):
        w = model.get_submodule(layer).weight
        m = expected_mask[start:start + w.shape[0]]
        start += w.shape[0]
        assert torch.allclose(params[f"{layer}.weight"],
                              w - 0.3 * m[:, None] * grads[f"{layer}.weight"],
                              atol=1e-14, rtol=0)
        b = model.get_submodule(layer).bias
        assert torch.allclose(params[f"{layer}.bias"], b - 0.3 * m * grads[f"{layer}.bias"],
                              atol=1e-14, rtol=0)
        assert torch.equal(params[f"{layer}.transform"], model.get_submodule(layer).transform)
    assert 0 < expected_mask.sum() < rule.noise_size


def _recording(learner):
    """Record the masks RowMask samples (loop batching: one call per task)."""
    rule, seen = _mask_rule(learner), []
    original = rule.mask

    def mask(noise=None):
        m = original(noise)
        seen.append(m.detach().clone())
        return m

    rule.mask = mask
    return seen


def test_mask_sampling_is_per_task_seeded_and_identical_after_a_state_dict_round_trip():
    cfg = MTNetConfig(seed=11, task_batching="loop")
    a = MTNet(_mlp(12), cfg).train()
    seen_a = _recording(a)
    a.meta_loss(_reg_batch(13, b=4))
    state = copy.deepcopy(a.state_dict())
    a.meta_loss(_reg_batch(14, b=4))
    first, second = torch.stack(seen_a[:4]), torch.stack(seen_a[4:])
    assert len({tuple(m.tolist()) for m in first}) > 1  # each task draws its own mask
    assert not torch.equal(first, second)
    assert torch.all((first == 0) | (first == 1))
    b = MTNet(_mlp(99), MTNetConfig(seed=0, task_batching="loop")).train()
    b.load_state_dict(state)  # the generator state travels with the weights
    seen_b = _recording(b)
    b.meta_loss(_reg_batch(14, b=4))
    assert torch.equal(torch.stack(seen_b), second)
    c = MTNet(_mlp(12), cfg).train()  # the same seed draws the same masks
    seen_c = _recording(c)
    c.meta_loss(_reg_batch(13, b=4))
    assert torch.equal(torch.stack(seen_c), first)
    d = MTNet(_mlp(12), MTNetConfig(seed=12, task_batching="loop")).train()
    seen_d = _recording(d)
    d.meta_loss(_reg_batch(13, b=4))
    assert not torch.equal(torch.stack(seen_d), first)
    # evaluation draws nothing: the generator does not move
    before = a.noise_rng.clone()
    a.eval().evaluate(_reg_batch(15))
    a.eval().meta_loss(_reg_batch(15))
    assert torch.equal(a.noise_rng, before)


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_loop_and_vmap_give_the_same_numbers_with_sampled_masks(net):
    base, batch = (_mlp(16), _reg_batch(17, b=4)) if net == "mlp" else (_conv(16),
                                                                        _cls_batch(17, b=4))
    results = {}
    for batching in ("loop", "vmap"):
        learner = MTNet(copy.deepcopy(base), MTNetConfig(inner_steps=2, inner_lr=0.2, seed=3,
                                                         task_batching=batching)).train()
        out, grads = _grads(learner, batch)
        results[batching] = (out, grads, learner.eval().evaluate(batch))
    (lo, lg, le), (vo, vg, ve) = results["loop"], results["vmap"]
    assert abs(lo.loss.item() - vo.loss.item()) < 1e-12
    assert lo.metrics == pytest.approx(vo.metrics, abs=1e-12)
    for name in lg:
        assert torch.allclose(lg[name], vg[name], atol=1e-10, rtol=0), name
    assert lg["rule.rules.0.logits"].abs().max() > 0
    for k in le:
        assert torch.allclose(le[k], ve[k], atol=1e-12, rtol=0)


def test_T_is_never_adapted_but_is_meta_learned():
    learner = MTNet(_conv(18), MTNetConfig(inner_steps=3, inner_lr=0.5)).train()
    t = _cls_batch(19).task(0)
    params = learner.adapt(t.support_x, t.support_y).params
    assert set(learner.names) == {n for n, _ in learner.model.named_parameters()
                                  if not n.endswith("transform")
                                  and n.split(".")[1] not in ("1", "5")}  # no BN
    for name, p in learner.model.named_parameters():
        assert torch.equal(params[name], p) == (name not in learner.names), name
    opt = torch.optim.SGD(learner.parameters(), 0.1)
    learner.meta_loss(_cls_batch(20)).loss.backward()
    opt.step()
    assert not torch.equal(learner.model.features[0].transform, torch.eye(4, dtype=torch.float64))


# --------------------------------------------------------------------------- config and registry
def test_registry_tnet_is_mtnet_without_mask():
    tnet = build_learner("tnet", _mlp(0))
    assert isinstance(tnet, MTNet) and tnet.config.mask is False
    assert isinstance(tnet.rule,
                      SGD) and tnet.rule.noise_size == 0 and "noise_rng" not in tnet.state_dict()
    assert build_learner("tnet", _mlp(0), MTNetConfig(inner_steps=2)).config.mask is False
    mt = build_learner("mtnet", _mlp(0), {"inner_lr": 0.2, "temperature": 0.5})
    assert mt.config.mask and mt.rule.noise_size == 6 + 5 + 2 and _mask_rule(mt).temperature == 0.5
    assert learner_config("tnet", {"inner_lr": 0.1}) == MTNetConfig(inner_lr=0.1, mask=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(inner_lr=-1.0), r"inner_lr must be a finite number >= 0, got -1.0"),
    (dict(temperature=0.0), r"temperature must be a finite number > 0 \(.*\), got 0.0"),
    (dict(temperature=float("inf")), r"temperature must be a finite number > 0 \(.*\), got inf"),
    (dict(logit_init=float("nan")), r"logit_init must be a finite number, got nan"),
    (dict(inner_steps=0), r"inner_steps must be >= 1, got 0")])
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        MTNetConfig(**kwargs)


def test_a_bare_linear_model_is_transformed_at_the_root():
    learner = MTNet(nn.Linear(3, 2).double(), MTNetConfig(inner_lr=0.1))
    assert learner.transformed == [""] and learner.names == ["weight", "bias"]
    assert learner.rule.noise_size == 2
    t = _reg_batch(21).task(0)
    assert set(learner.adapt(t.support_x, t.support_y).params) == {"weight", "bias", "transform"}


def test_a_model_without_linear_or_conv_layers_is_refused():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.w

    with pytest.raises(ConfigError, match="no nn.Linear or nn.Conv2d"):
        MTNet(Scale())


# --------------------------------------------------------------------------- learning


def test_mtnet_learns_sinusoid_regression(one_thread):
    from episodes import SinusoidTasks
    from fewshot.nn import MLP

    val = SinusoidTasks(5, 10, seed=1).sample(200)
    post = {}
    for name in ("untrained", "mtnet", "maml"):
        torch.manual_seed(0)  # test-only module init: the same initial weights for all three
        learner = build_learner("maml" if name == "maml" else "mtnet", MLP(1, 1, hidden=(20, 20)),
                                {"inner_lr": 0.05, "task_batching": "vmap"})
        if name != "untrained":
            meta_train(learner, SinusoidTasks(5, 10, seed=0), 300, 10,
                       torch.optim.Adam(learner.parameters(), 3e-3))
        post[name] = learner.eval().evaluate(val)["mse"].mean().item()
    # after 300 iterations (early for sinusoid meta-learning) MT-net halves the adapted error of its
    # untrained
    # start (measured: 1.99 vs 4.00) and beats a same-seed MAML with the same budget (2.65): its
    # learned
    # mask and transforms are what the paper adds over MAML
    assert post["mtnet"] < 0.6 * post["untrained"] and post["mtnet"] < 0.85 * post["maml"], post
