import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.l2o import CoordinateLSTM, LSTMOptimizerConfig


def _run(net, grads):
    state = net.initial_state(grads[0].numel())
    outs = []
    for g in grads:
        u, state = net(g, state)
        outs.append(u)
    return torch.stack(outs)


def test_permuting_coordinates_permutes_updates(small_net):
    torch.manual_seed(1)
    grads = [torch.randn(12, dtype=torch.float64) * 10 ** torch.randint(-6, 2, (12,))
             for _ in range(5)]
    perm = torch.randperm(12)
    plain = _run(small_net, grads)
    permuted = _run(small_net, [g[perm] for g in grads])
    assert torch.allclose(permuted, plain[:, perm], rtol=0, atol=1e-13)


def test_hidden_state_is_per_coordinate(small_net):
    """Changing coordinate 0's gradient history leaves every other coordinate's updates
    unchanged."""
    torch.manual_seed(2)
    grads = [torch.randn(6, dtype=torch.float64) for _ in range(4)]
    other = [g.clone() for g in grads]
    for g in other[:3]:
        g[0] = 100.0
    a, b = _run(small_net, grads), _run(small_net, other)
    assert torch.allclose(a[:, 1:], b[:, 1:], rtol=0, atol=1e-13)
    assert not torch.allclose(a[-1, 0], b[-1, 0])  # coordinate 0 remembers its own past


def test_output_scale_scales_the_update():
    torch.manual_seed(0)
    a = CoordinateLSTM(LSTMOptimizerConfig(output_scale=0.1))
    torch.manual_seed(0)
    b = CoordinateLSTM(LSTMOptimizerConfig(output_scale=1.0))
    g = torch.randn(5)
    ua, _ = a(g, a.initial_state(5))
    ub, _ = b(g, b.initial_state(5))
    assert torch.allclose(ua * 10, ub, atol=1e-6)


def test_raw_gradient_mode_has_one_input():
    net = CoordinateLSTM(LSTMOptimizerConfig(preprocess=False, layers=3))
    assert net.cells[0].input_size == 1 and len(net.cells) == 3
    u, state = net(torch.randn(4), net.initial_state(4))
    assert u.shape == (4,) and len(state) == 6


@pytest.mark.parametrize("kw,msg", [({"p": 0.0}, "p must be"), ({"hidden": 0}, "hidden must be"),
                                    ({"output_scale": -1.0}, "output_scale must be")])
def test_bad_config_is_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        CoordinateLSTM(LSTMOptimizerConfig(**kw))
