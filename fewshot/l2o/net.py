"""The coordinatewise LSTM optimizer m(grad, h; phi) of "Learning to learn by gradient descent by
gradient descent".

One small LSTM (two layers of 20 units by default) is shared by every coordinate of the optimizee;
each coordinate keeps its own hidden and cell states, so the update rule does not depend on the
order or number of parameters. A linear layer maps the top hidden state to the update ``g_t`` and
``theta_{t+1} = theta_t + output_scale * g_t``.

Usage::

    net = CoordinateLSTM(LSTMOptimizerConfig())
    state = net.initial_state(theta.numel())
    update, state = net(grad.flatten(), state)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_count
from ..errors import ConfigError
from ..rules.preprocess import check_p, preprocess_gradients

State = tuple[torch.Tensor, ...]  # (h_1, c_1, ..., h_L, c_L), each [n, hidden]


@dataclass
class LSTMOptimizerConfig:
    """Architecture of the learned optimizer.

    ``preprocess``: feed ``preprocess_gradients(g, p)`` (2 inputs) instead of the raw gradient (1
    input). ``output_scale``: the LSTM's output is multiplied by it (0.1 in the thesis' MNIST
    experiments).
    """

    hidden: int = 20
    layers: int = 2
    preprocess: bool = True
    p: float = 10.0
    output_scale: float = 0.1

    def __post_init__(self) -> None:
        for key in ("hidden", "layers"):
            check_count(getattr(self, key), f"learned optimizer {key}")
        check_p(self.p)
        if not isinstance(self.output_scale, (int, float)) or not self.output_scale > 0:
            raise ConfigError(
                f"learned optimizer output_scale must be > 0, got {self.output_scale!r}")


class CoordinateLSTM(nn.Module):
    """Shared-weight LSTM applied to every coordinate independently."""

    def __init__(self, config: LSTMOptimizerConfig | None = None) -> None:
        super().__init__()
        self.config = config or LSTMOptimizerConfig()
        c = self.config
        sizes = [2 if c.preprocess else 1] + [c.hidden] * c.layers
        self.cells = nn.ModuleList(nn.LSTMCell(sizes[i], sizes[i + 1]) for i in range(c.layers))
        self.out = nn.Linear(c.hidden, 1)

    def initial_state(self, n: int, *, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> State:
        """Zero hidden and cell states for ``n`` coordinates."""
        ref = self.out.weight
        zeros = torch.zeros(n, self.config.hidden, device=device or ref.device,
                            dtype=dtype or ref.dtype)
        return tuple(zeros.clone() for _ in range(2 * self.config.layers))

    def forward(self, grad: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``grad`` [n] -> (update [n], new state). Gradients are inputs: no graph is built through
        them."""
        c = self.config
        x = preprocess_gradients(grad, c.p) if c.preprocess else grad.unsqueeze(-1)
        new_state: list[torch.Tensor] = []
        for i, cell in enumerate(self.cells):
            h, cs = cell(x, (state[2 * i], state[2 * i + 1]))
            new_state += [h, cs]
            x = h
        return self.out(x).squeeze(-1) * c.output_scale, tuple(new_state)
