"""The meta-learner LSTM of Ravi & Larochelle (2017), "Optimization as a model for few-shot
learning".

The learner's parameters are the cell state of a coordinatewise LSTM whose gates learn the update::

    x_t   = [pre(∇_t), pre(L_t)]                    (4 inputs per coordinate: preprocess_gradients)
    h_t   = LSTM_1(x_t, h_{t-1})                    (standard LSTM, 20 units, shared by coordinates)
    f_t   = σ(W_F · [h_t, θ_{t-1}, f_{t-1}] + b_F)      (forget gate: shrinks the parameters)
    i_t   = σ(W_I · [h_t, θ_{t-1}, i_{t-1}] + b_I)      (input gate: a per-coordinate learning rate)
    θ_t   = f_t ⊙ θ_{t-1} − i_t ⊙ ∇_t

Every adapted tensor of one task is flattened and concatenated into one ``[n]`` vector of
coordinates, so the LSTM runs as one ``[n, features]`` batch; its state (``h``, ``c`` of layer 1 and
the previous gates ``f``, ``i``) is ``[n, ...]`` per task and batches under ``vmap``.

Choices (see also docs/batchnorm.md and ``fewshot.learners.lstm_meta``):

* The rule returns the *update* ``(f_t − 1) ⊙ θ_{t−1} − i_t ⊙ ∇_t``; the inner loop adds it to
  ``θ_{t−1}``, which is the paper's formula in exact arithmetic (the float result differs only by
  the rounding of one extra addition, and ``f_t − 1`` itself is exact for ``f_t ≥ 1/2``).
* ``∇_t`` and ``L_t`` are detached inside the rule: the paper treats them as constants (no second
  derivatives), so the meta-gradient reaches the LSTM weights and the initial parameters (through
  ``θ_{t−1}`` in the gates and in ``f_t ⊙ θ_{t−1}``) but never flows through the gradient.
* ``f_0 = i_0 = 0``: the paper does not specify them; the widely used PyTorch port of the authors'
  code (markdtw/meta-learning-lstm-pytorch) starts the previous gates at zero.  The state carries
  the gate *values* σ(·), as in the paper's equations (that port feeds back the pre-activations
  instead; with the ±0.01 initial weights on these inputs the difference is negligible at the
  start).
* Initialisation: ``b_F ~ U(4, 5)`` (forget gate ≈ 1: keep the parameters), ``b_I ~ U(−5, −4)``
  (input gate ≈ 0.01: start as small-step gradient descent), every other weight ``U(−0.01, 0.01)``,
  all drawn from a ``torch.Generator`` seeded by ``seed`` (never the global RNG).
* ``nn.LSTMCell`` has no ``vmap`` batching rule, so layer 1 is written from ``F.linear`` and
  elementwise ops (``lstm_cell``), with ``nn.LSTMCell``'s parameter names, shapes and gate order
  ``(i, f, g, o)`` so its weights load into one for comparison.

Usage::

    rule = LSTMMetaRule(names, seed=0)
    out = InnerLoop(model, rule, names, F.cross_entropy).run(params, buffers, sx, sy, steps=12)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_count, check_interval, check_number
from ..errors import ConfigError
from .base import Params, State, UpdateRule
from .preprocess import check_p, preprocess_gradients


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_ih: torch.Tensor,
              weight_hh: torch.Tensor,
              bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of ``nn.LSTMCell`` (same weights, gate order i, f, g, o) from ops ``vmap`` can
    batch.

    Usage: ``h, c = lstm_cell(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)``
    """
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def check_hidden(value: object) -> int:
    """The LSTM's width (units, an integer >= 1; the paper uses 20), validated here only
    (``LSTMMetaConfig`` calls this)."""
    return check_count(value, "hidden")


class LSTMMetaRule(UpdateRule):
    """Ravi & Larochelle's two-layer meta-learner LSTM as an update rule (see the module docstring).

    Meta-parameters: layer 1 ``weight_ih [4H, 4]``, ``weight_hh [4H, H]``, ``bias_ih``, ``bias_hh``
    ``[4H]`` (``nn.LSTMCell`` layout); layer 2 ``forget_weight``/``input_weight [H + 2]`` (over
    ``[h_t, θ_{t−1}, gate_{t−1}]``) and ``forget_bias``/``input_bias [1]``.

    ``detach_inputs=False`` differentiates through ``∇_t`` and ``L_t`` (second order), which the
    paper does not do; it exists to test that the default really cuts that path.
    """

    INPUTS = 4  # preprocessed gradient (2) and preprocessed loss (2)

    def __init__(self, names: Sequence[str], *, hidden: int = 20, p: float = 10.0, seed: int = 0,
                 init_range: float = 0.01, forget_bias: tuple[float, float] = (4.0, 5.0),
                 input_bias: tuple[float, float] = (-5.0, -4.0), detach_inputs: bool = True,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if not names:
            raise ConfigError("LSTMMetaRule needs at least one parameter name to update")
        check_hidden(hidden)
        check_number(init_range, "LSTM meta-learner init_range", at_least=0,
                     note=" (the paper uses 0.01)")
        forget_bias = check_interval(forget_bias, "LSTM meta-learner forget_bias range")
        input_bias = check_interval(input_bias, "LSTM meta-learner input_bias range")
        self.names = list(names)
        self.hidden = hidden
        self.p = check_p(p)
        self.detach_inputs = detach_inputs
        gen = torch.Generator().manual_seed(seed)

        def draw(shape: tuple[int, ...], lo: float, hi: float) -> nn.Parameter:
            t = torch.empty(shape, dtype=torch.float64).uniform_(lo, hi, generator=gen)
            return nn.Parameter(t.to(dtype=dtype, device=device))

        r, h = init_range, hidden
        self.weight_ih = draw((4 * h, self.INPUTS), -r, r)
        self.weight_hh = draw((4 * h, h), -r, r)
        self.bias_ih = draw((4 * h,), -r, r)
        self.bias_hh = draw((4 * h,), -r, r)
        self.forget_weight = draw((h + 2,), -r, r)
        self.input_weight = draw((h + 2,), -r, r)
        self.forget_bias = draw((1,), *forget_bias)
        self.input_bias = draw((1,), *input_bias)

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        """Zero LSTM state and zero previous gates (``f_0 = i_0 = 0``) for every coordinate."""
        n = sum(params[name].numel() for name in self.names)
        ref = self.weight_ih
        zeros = torch.zeros(n, self.hidden, dtype=ref.dtype, device=ref.device)
        gate = torch.zeros(n, dtype=ref.dtype, device=ref.device)
        return {"h": zeros, "c": zeros.clone(), "f": gate, "i": gate.clone()}

    def gates(self, grad: torch.Tensor, loss: torch.Tensor, theta: torch.Tensor, state: State
              ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """``(f_t, i_t, new_state)`` for flat ``grad``, ``theta`` ``[n]`` and the scalar ``loss``
        (no detaching)."""
        n = grad.shape[0]
        x = torch.cat((preprocess_gradients(grad, self.p),
                       preprocess_gradients(loss.reshape(1), self.p).expand(n, 2)), dim=-1)
        h, c = lstm_cell(x, state["h"], state["c"], self.weight_ih, self.weight_hh, self.bias_ih,
                         self.bias_hh)
        hid = self.hidden

        def gate(weight: torch.Tensor, bias: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
            # W · [h_t, θ_{t-1}, gate_{t-1}] + b without materialising the [n, H + 2] concatenation
            return torch.sigmoid(F.linear(h, weight[:hid].unsqueeze(0)).squeeze(-1)
                                 + weight[hid] * theta + weight[hid + 1] * previous + bias)

        f = gate(self.forget_weight, self.forget_bias, state["f"])
        i = gate(self.input_weight, self.input_bias, state["i"])
        return f, i, {"h": h, "c": c, "f": f, "i": i}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        grad = torch.cat([grads[name].reshape(-1) for name in self.names])
        theta = torch.cat([params[name].reshape(-1) for name in self.names])
        if self.detach_inputs:
            grad, loss = grad.detach(), loss.detach()
        f, i, state = self.gates(grad, loss, theta, state)
        flat = (f - 1) * theta - i * grad
        updates, start = {}, 0
        for name in self.names:
            shape = params[name].shape
            size = params[name].numel()
            updates[name] = flat[start:start + size].reshape(shape)
            start += size
        return updates, state
