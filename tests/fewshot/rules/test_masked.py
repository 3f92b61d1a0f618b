"""RowMask (MT-net's M): straight-through Gumbel sampling, eval mask, per-row masking, chaining,
vmap."""
import pytest
import torch
from torch.func import vmap

from fewshot.errors import ConfigError
from fewshot.rules import SGD, Chain, RowMask

_LOSS = torch.tensor(0.0)


def _rule(logits, **kw):
    rule = RowMask([(["l1.weight", "l1.bias"], 3), (["l2.weight"], 2)], dtype=torch.float64, **kw)
    with torch.no_grad():
        rule.logits.copy_(torch.tensor(logits, dtype=torch.float64))
    return rule


def test_eval_mask_is_logits_at_least_zero_and_exactly_binary():
    rule = _rule([-1.0, 0.0, 2.0, -0.5, 0.5])
    m = rule.mask(None)
    assert m.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert rule.noise_size == 5 and rule.init({}, None)["mask"].tolist() == m.tolist()


def test_sampled_masks_follow_sigmoid_of_the_logits():
    logits = [-2.0, -0.5, 0.0, 1.0, 3.0]
    rule = _rule(logits)
    noise = torch.rand(40000, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    masks = vmap(lambda u: rule.mask(u))(noise)
    assert torch.all((masks == 0) | (masks == 1))
    freq = masks.mean(0)
    expected = torch.sigmoid(torch.tensor(logits, dtype=torch.float64))
    assert torch.allclose(freq, expected, atol=0.01), (freq, expected)


def test_the_reference_two_gumbel_softmax_gives_the_same_relaxed_value():
    # MT-net's code: softmax([logit + g1, 0 + g0] / T)[0] with g = -log(-log U); ours:
    # sigmoid((logit + L) / T)
    # with L = log(u) - log(1 - u); g1 - g0 is logistic, so set u = sigmoid(g1 - g0) and compare.
    gen = torch.Generator().manual_seed(1)
    g1, g0 = (-torch.log(-torch.log(torch.rand(5, generator=gen, dtype=torch.float64)))
              for _ in range(2))
    rule = _rule([0.3, -1.2, 0.0, 2.0, -0.1], temperature=0.7)
    reference = torch.softmax(torch.stack([rule.logits + g1, g0], 1) / 0.7, 1)[:, 0]
    z = rule.logits + (g1 - g0)
    assert torch.allclose(torch.sigmoid(z / 0.7), reference, atol=1e-14)
    m = rule.mask(torch.sigmoid(g1 - g0))
    assert torch.equal(m.detach(), (reference >= 0.5).double())


def test_straight_through_gradient_is_the_relaxed_sample_gradient():
    rule = _rule([0.3, -1.2, 0.0, 2.0, -0.1], temperature=0.5)
    u = torch.tensor([0.2, 0.9, 0.5, 0.01, 0.6], dtype=torch.float64)
    m = rule.mask(u)
    (grad,) = torch.autograd.grad((m * torch.arange(1.0, 6.0, dtype=torch.float64)).sum(),
                                  rule.logits)
    z = rule.logits.detach() + torch.log(u) - torch.log1p(-u)
    s = torch.sigmoid(z / 0.5)
    assert torch.allclose(grad, torch.arange(1.0, 6.0, dtype=torch.float64) * s * (1 - s) / 0.5,
                          atol=1e-14)
    assert torch.equal(m.detach(), (z >= 0).double())
    # u = 0 is a valid draw
    assert torch.isfinite(rule.mask(torch.zeros(5, dtype=torch.float64))).all()


def test_forward_masks_whole_rows_and_passes_other_gradients_through():
    rule = _rule([1.0, -1.0, 1.0, -1.0, 1.0])
    grads = {"l1.weight": torch.ones(3, 4, 3, 3, dtype=torch.float64),
             "l1.bias": torch.ones(3, dtype=torch.float64),
             "l2.weight": torch.ones(2, 5, dtype=torch.float64),
             "other": torch.ones(7, dtype=torch.float64)}
    out, state = rule(grads, rule.init({}, None), {}, step=0, loss=_LOSS)
    assert out["l1.weight"].sum((1, 2, 3)).tolist() == [36.0, 0.0, 36.0]
    assert out["l1.bias"].tolist() == [1.0, 0.0, 1.0]
    assert out["l2.weight"].sum(1).tolist() == [0.0, 5.0]
    assert torch.equal(out["other"], grads["other"])
    assert set(state) == {"mask"}
    # absent names are fine
    out, _ = rule({"l2.weight": grads["l2.weight"]}, state, {}, step=1, loss=_LOSS)
    assert set(out) == {"l2.weight"}


def test_chained_with_sgd_and_noise_under_vmap_equals_the_loop():
    rule = Chain(_rule([0.0] * 5), SGD(["l1.bias", "l2.weight"], 0.5, dtype=torch.float64))
    assert rule.noise_size == 5
    noise = torch.rand(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = {"l1.bias": torch.ones(3, dtype=torch.float64),
             "l2.weight": torch.ones(2, 5, dtype=torch.float64)}

    def one(u):
        return rule(grads, rule.init({}, u), {}, step=0, loss=_LOSS)[0]

    batched = vmap(one)(noise)
    for i in range(6):
        looped = one(noise[i])
        mask = rule.rules[0].mask(noise[i]).detach()
        assert torch.equal(looped["l1.bias"], -0.5 * mask[:3])
        assert all(torch.equal(batched[k][i], looped[k]) for k in looped)


@pytest.mark.parametrize("groups, kw, match", [
    ([], {}, "at least one group"),
    ([(["w"], 0)], {}, "positive count"),
    ([(["w"], 2)], {"temperature": 0.0}, "temperature"),
])
def test_errors(groups, kw, match):
    with pytest.raises(ConfigError, match=match):
        RowMask(groups, **kw)
