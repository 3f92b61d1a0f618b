"""The learners' configs: ``LearnerConfig`` (the switches every gradient-based learner shares) and
each learner's own (``MAMLConfig``, ``ANILConfig``, ``ReptileConfig``, ``MetaSGDConfig``,
``MTNetConfig``, ``LSTMMetaConfig``, ``IMAMLConfig``), each checked once when it is made.

Why a module of their own: a config is data (a typed dataclass that ``fewshot.config`` files and the
CLI fill in), read by the learner but independent of its code, so a learner's file holds its
algorithm alone. Here too: the allowed values of the switches (``BN_MODES``, ``LOSSES``,
``TASK_BATCHING``, ...) and ``check_lr``, the learning-rate check the configs share.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any, Literal

from ..checks import check_count, check_number
from ..errors import ConfigError
from ..rules.lstm import check_hidden
from ..rules.masked import check_temperature
from ..rules.metasgd import check_alpha_init
from ..rules.optim import check_betas, check_eps, check_unit
from ..rules.preprocess import check_p

BN_MODES = ("transductive", "support", "running", "frozen")
LOSSES = ("auto", "cross_entropy", "mse")
TASK_BATCHING = ("auto", "loop", "vmap")


@dataclass
class LearnerConfig:
    """The switches every gradient-based learner shares (learner configs subclass it).

    - ``inner_steps``: adaptation steps in training; ``eval_steps`` (None = ``inner_steps``) the
      default number of steps in eval mode.
    - ``first_order``: detach the support gradients (FOMAML-style); ``first_order_epochs`` (DA):
      first order while ``epoch < first_order_epochs``, then second order.
    - ``msl``/``msl_epochs`` (MSL): query loss after every step, weighted by ``msl_weights`` while
      ``epoch < msl_epochs``; from then on only the last step's loss.
    - ``per_step_bn`` (BNRS + BNWB): batch-norm layers get ``bn_slots`` slots (None:
      ``max(inner_steps, eval_steps) + 1``; converted in place if needed); the forward with
      parameters after ``t`` updates uses slot ``t``, steps past the last slot use the last one.
      ``bn_slots`` pins the count, so a model's default test steps can change (a pretrained
      manifest's ``test_steps``) while its weights still load.
    - ``best_step``: at evaluation (``adapt``, ``evaluate``, validation, ``fewshot eval``), when the
      support loss after the last step is above the lowest one seen (adaptation diverged), use the
      parameters of the lowest-support-loss step instead (support labels only: no query
      information); the step used is reported.  Training's meta-loss always uses the last step.
    - ``bn_mode``: ``"transductive"`` | ``"support"`` | ``"running"`` | ``"frozen"``
      (docs/batchnorm.md).
    - ``adapt_norm``: also adapt normalisation-layer affine parameters (default: meta-learned only);
      ``no_adapt``: name prefixes of parameters that are meta-learned but never adapted.
    - ``loss``: ``"auto"`` (cross-entropy when ``batch.ways`` is set, else MSE) |
      ``"cross_entropy"`` | ``"mse"``.
    - ``task_batching``: ``"loop"`` (per task), ``"vmap"`` (one batched computation) or ``"auto"``
      (``fewshot.learners.batching``).
    - ``seed``: seeds the learner's own generator of per-task noise (only rules that draw noise,
      such as MT-net's mask sampling, use it).
    - ``checkpoint_steps`` (0 = off): recompute instead of storing: the inner loop runs in segments
      of this many steps whose graphs are rebuilt during backward (``InnerLoop(checkpoint=...)``),
      so memory grows by one parameter copy per segment rather than by every step's graph, for about
      one more first-order pass of compute.  Same gradients; per-task loop only (``task_batching``
      "loop" or "auto").
    """

    inner_steps: int = 1
    eval_steps: int | None = None
    first_order: bool = False
    first_order_epochs: int = 0
    msl: bool = False
    msl_epochs: int = 10
    per_step_bn: bool = False
    bn_mode: Literal["transductive", "support", "running", "frozen"] = "transductive"
    adapt_norm: bool = False
    no_adapt: tuple[str, ...] = ()
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    task_batching: Literal["auto", "loop", "vmap"] = "auto"
    seed: int = 0
    checkpoint_steps: int = 0
    bn_slots: int | None = None
    best_step: bool = True

    def __post_init__(self) -> None:
        self.no_adapt = tuple(self.no_adapt)
        check_count(self.inner_steps, "inner_steps")
        for name in ("eval_steps", "bn_slots"):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), name)
        for name in ("first_order_epochs", "msl_epochs", "seed", "checkpoint_steps"):
            check_count(getattr(self, name), name, minimum=0)
        if self.seed >= 2**63:
            raise ConfigError(f"seed must be below 2**63, got {self.seed}")
        for name, value, allowed in (("bn_mode", self.bn_mode, BN_MODES),
                                     ("loss", self.loss, LOSSES),
                                     ("task_batching", self.task_batching, TASK_BATCHING)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.checkpoint_steps and self.task_batching == "vmap":
            raise ConfigError(
                "checkpoint_steps recomputes on the per-task loop only (torch.func transforms "
                "cannot "
                "run it): set task_batching='loop' or 'auto', or checkpoint_steps=0")


def check_lr(name: str, value: Any) -> None:
    """ConfigError unless ``value`` is a finite number >= 0 (a learning rate)."""
    check_number(value, name, at_least=0)


INNER_OPTIMIZERS = ("sgd", "adam", "rmsprop")

# the settings each inner optimizer reads (any other inner_* setting must keep its default)
_OPTIMIZER_SETTINGS = {"sgd": {"inner_momentum", "inner_nesterov"},
                       "adam": {"inner_betas", "inner_eps"},
                       "rmsprop": {"inner_momentum", "inner_alpha", "inner_eps", "inner_centered"}}

# MAML++ (Antoniou et al. 2019): MSL, per-step BN (running statistics), LSLR and DA (pair it with
# cosine
# annealing of the meta learning rate for CA)
MAMLPP = dict(inner_steps=5, inner_lr=0.1, msl=True, msl_epochs=10, learn_inner_lr=True,
              per_step_bn=True,
              bn_mode="running", first_order_epochs=50)


@dataclass
class MAMLConfig(LearnerConfig):
    """MAML's switches on top of ``LearnerConfig``.

    - ``inner_lr``: SGD step size on the mean support loss.
    - ``learn_inner_lr`` (MAML++ LSLR): one learnable LR per adapted tensor per step, initialised to
      ``inner_lr`` (steps beyond ``inner_steps`` at evaluation reuse the last step's LR); with any
      ``inner_optimizer``.
    - ``inner_optimizer``: ``"sgd"`` (MAML), ``"adam"`` or ``"rmsprop"`` (``fewshot.rules``,
      PyTorch's formulas, docs/rules.md), with ``inner_momentum`` (sgd, rmsprop; in [0, 1)),
      ``inner_nesterov`` (sgd), ``inner_betas`` (adam; each in [0, 1)), ``inner_alpha`` and
      ``inner_centered`` (rmsprop) and ``inner_eps`` (adam, rmsprop; > 0).  A setting the chosen
      optimizer does not read must keep its default, so that no setting is silently ignored.
    """

    inner_lr: float = 0.4
    learn_inner_lr: bool = False
    inner_optimizer: str = "sgd"
    inner_momentum: float = 0.0
    inner_nesterov: bool = False
    inner_betas: tuple[float, float] = (0.9, 0.999)
    inner_eps: float = 1e-8
    inner_alpha: float = 0.99
    inner_centered: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lr("inner_lr", self.inner_lr)
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            close = difflib.get_close_matches(str(self.inner_optimizer), INNER_OPTIMIZERS, n=1)
            hint = (f"did you mean '{close[0]}'?" if close
                    else f"use one of {', '.join(INNER_OPTIMIZERS)}")
            raise ConfigError(f"unknown inner_optimizer {self.inner_optimizer!r}: {hint}")
        self.inner_betas = check_betas("inner_betas", self.inner_betas)
        self.inner_eps = check_eps("inner_eps", self.inner_eps)
        self.inner_momentum = check_unit("inner_momentum", self.inner_momentum)
        self.inner_alpha = check_unit("inner_alpha", self.inner_alpha)
        if self.inner_nesterov and self.inner_momentum == 0:
            raise ConfigError("inner_nesterov needs inner_momentum > 0 (e.g. inner_momentum=0.9)")
        read = _OPTIMIZER_SETTINGS[self.inner_optimizer]
        for f in fields(self):
            if f.name in _OPTIMIZER_SETTINGS["rmsprop"] | _OPTIMIZER_SETTINGS["adam"] | {
                "inner_nesterov"} \
                    and f.name not in read and getattr(self, f.name) != f.default:
                users = [k for k, v in _OPTIMIZER_SETTINGS.items() if f.name in v]
                raise ConfigError(f"{f.name} applies to inner_optimizer {' or '.join(users)}, not "
                                  f"{self.inner_optimizer!r}: set inner_optimizer or drop {f.name}")

    @classmethod
    def mamlpp(cls, **overrides: Any) -> "MAMLConfig":
        """MAML++: MAML with MSL, per-step BN (running statistics), LSLR and DA (``MAMLPP``; pair it
        with cosine annealing of the meta learning rate for CA)."""
        return cls(**{**MAMLPP, **overrides})


PARTS = ("head", "body")


@dataclass
class ANILConfig(MAMLConfig):
    """ANIL/BOIL on top of ``MAMLConfig``: ``part`` = ``"head"`` (ANIL: adapt only the head) or
    ``"body"`` (BOIL: adapt everything but the head); ``head`` = the head's module name (prefix of
    its parameter names), None = the last ``nn.Linear`` with trainable parameters."""

    part: Literal["head", "body"] = "head"
    head: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.part not in PARTS:
            raise ConfigError(f"part must be 'head' (ANIL) or 'body' (BOIL), got {self.part!r}")
        if self.head is not None and (not isinstance(self.head, str) or not self.head.strip(".")):
            raise ConfigError(
                "head must be a module name such as 'classifier' (or null for the last "
                "nn.Linear), "
                f"got {self.head!r}")


INNER_DATA = ("all", "support")


@dataclass
class ReptileConfig(MAMLConfig):
    """Reptile on top of ``MAMLConfig`` (its inner optimizers): ``inner_data`` = ``"all"`` (support
    + query in training) or ``"support"``; ``first_order`` is True and must stay so."""

    first_order: bool = True
    inner_data: Literal["all", "support"] = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inner_data not in INNER_DATA:
            raise ConfigError(
                f"inner_data must be 'all' (support + query) or 'support', got {self.inner_data!r}")
        for name, off in (("first_order", True), ("msl", False), ("first_order_epochs", 0),
                          ("learn_inner_lr", False)):
            if getattr(self, name) != off:
                raise ConfigError(
                    f"reptile: {name} must be {off}: Reptile's meta-gradient is theta - phi, with "
                    "no "
                    f"differentiated query loss; remove the {name} setting")

    def check_optim(self, optim: Any) -> None:
        """With SGD as the meta-optimizer (``optim``, a ``MetaOptimConfig``) its learning rate is
        Reptile's step size eps: it must be in (0, 1].  ``TrainConfig`` calls this hook of its
        learner config."""
        optimizer, lr = optim.optimizer, optim.lr
        if optimizer == "sgd" and not 0 < lr <= 1:
            raise ConfigError(
                "reptile: with optim.optimizer=sgd, optim.lr is Reptile's step size eps and must "
                "be "
                "in (0, 1] (theta moves that fraction of the way to phi), got "
                f"{lr!r}: "
                "e.g. --set optim.lr=1")


@dataclass
class MetaSGDConfig(LearnerConfig):
    """Meta-SGD's switches on top of ``LearnerConfig``.

    - ``alpha_init``: ``(low, high)``; every entry of alpha starts uniform in that range, drawn from
      a generator seeded by ``seed`` (never the global RNG).  The paper's ``[0.005, 0.1]`` is copied
      unscaled: the paper defines the inner loss as the *mean* over the support set (our scale),
      unlike the MAML code's sum/K (see ``fewshot.config.presets.protocols``).  ``(a, a)`` starts
      every entry at ``a`` (learn2learn's ``MetaSGD(lr=a)``).
    - ``per_step_lr``: one alpha tensor per inner step (steps beyond ``inner_steps`` at evaluation
      reuse the last); default one alpha per element shared by all steps, as in the paper.
    """

    alpha_init: tuple[float, float] = (0.005, 0.1)
    per_step_lr: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha_init = check_alpha_init(self.alpha_init)


@dataclass
class MTNetConfig(LearnerConfig):
    """MT-net's switches on top of ``LearnerConfig``.

    - ``inner_lr``: SGD step size on the mean support loss (MAML's scale, see
      ``fewshot.config.presets.protocols``).
    - ``mask``: sample the update mask M (MT-net); False updates every unit (T-net).
    - ``logit_init`` / ``temperature``: initial mask logit (0: probability 1/2) and the
      Gumbel-softmax temperature of the straight-through estimator (the paper's 1).
    - ``transform_last``: give the last Linear/Conv2d (the head) a T and a mask too, as the
      reference does.
    """

    inner_lr: float = 0.4
    mask: bool = True
    logit_init: float = 0.0
    temperature: float = 1.0
    transform_last: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lr("inner_lr", self.inner_lr)
        check_temperature(self.temperature)
        check_number(self.logit_init, "logit_init")


@dataclass
class LSTMMetaConfig(LearnerConfig):
    """The LSTM meta-learner's switches on top of ``LearnerConfig``.

    - ``hidden``: units of the first LSTM layer (20 in the paper); ``p``: gradient/loss
      preprocessing constant (10 in the paper).
    - ``seed`` (inherited): seeds the generator the LSTM's initial weights are drawn from.
    - ``adapt_norm`` defaults to True: the paper's cell state is every learner parameter, batch-norm
      scale and shift included.
    - ``first_order`` must stay True: the rule treats gradients and losses as constants (the paper
      drops second derivatives), so there is no second-order variant to switch to.
    - ``inner_steps``: the paper uses 12 updates (1-shot) and 8 (5-shot) on mini-ImageNet.
    """

    inner_steps: int = 5
    first_order: bool = True
    adapt_norm: bool = True
    hidden: int = 20
    p: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.first_order:
            raise ConfigError(
                "lstm-meta: first_order must be True: the LSTM meta-learner treats the support "
                "gradients and loss as constants (Ravi & Larochelle drop second "
                "derivatives); "
                "remove the first_order=False setting")
        check_hidden(self.hidden)
        self.p = check_p(self.p)


INNER_SOLVERS = ("gd", "hf")


@dataclass
class IMAMLConfig(LearnerConfig):
    """iMAML's switches on top of ``LearnerConfig``.

    - ``lam`` (> 0): the proximal strength lambda; small = tasks move far from theta (and CG gets
      harder).
    - ``inner_lr``: gradient-descent step size on the mean support loss plus the proximal term
      (stable while ``inner_lr * (lam + L) < 2``, ``L`` the support loss's curvature).
    - ``cg_steps`` (>= 1): conjugate-gradient iterations per task; ``cg_tol`` (>= 0): a task's solve
      stops once its relative residual is at most this; solves ending above it are counted in the
      ``cg_unconverged`` metric (0: no tolerance, always ``cg_steps`` iterations, nothing counted).
    - ``cg_radius`` (> 0, or None for plain CG): the bound on the solution's norm, as a multiple of
      the query gradient's norm, that truncates the solve (module docstring: 1 never binds where
      ``H`` is positive semi-definite).
    - ``inner_solver``: ``"gd"`` (iMAML-GD: ``inner_steps`` gradient steps of ``inner_lr`` on the
      proximal objective) or ``"hf"`` (iMAML-HF: ``inner_steps`` damped Newton steps,
      ``fewshot.rules.NewtonCG``, each solving ``(H + lam I) d = g`` by ``hf_cg_steps`` truncated CG
      iterations; ``inner_lr`` then scales the Newton step, 1 = the full step).
    - ``first_order``: skip CG (``(I + H/lam)^{-1} ~ I``).  ``msl`` and ``checkpoint_steps`` do not
      apply (the meta-gradient is taken at the last step only, and the inner loop keeps no graph to
      recompute).
    """

    inner_steps: int = 10
    inner_lr: float = 0.1
    lam: float = 2.0
    cg_steps: int = 5
    cg_tol: float = 1e-3
    cg_radius: float | None = 1.0
    inner_solver: str = "gd"
    hf_cg_steps: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lr("inner_lr", self.inner_lr)
        if isinstance(self.lam, bool) or not isinstance(self.lam,
                                                        (int, float)) or not 0 < self.lam < float(
                                                            "inf"):
            raise ConfigError(
                f"lam must be a finite number > 0 (the proximal strength, e.g. lam=2.0), "
                f"got {self.lam!r}")
        check_count(self.cg_steps, "cg_steps")
        check_count(self.hf_cg_steps, "hf_cg_steps")
        if self.inner_solver not in INNER_SOLVERS:
            raise ConfigError(
                f"inner_solver must be one of {', '.join(INNER_SOLVERS)} (gradient descent or "
                f"Hessian-free Newton-CG), got {self.inner_solver!r}")
        if isinstance(self.cg_tol, bool) or not isinstance(self.cg_tol,
                                                           (int,
                                                            float)) or not 0 <= self.cg_tol < 1:
            raise ConfigError(
                f"cg_tol must be a number in [0, 1) (a relative residual, e.g. 1e-3), "
                f"got {self.cg_tol!r}")
        if self.cg_radius is not None and (isinstance(self.cg_radius, bool) or not isinstance(
                self.cg_radius, (int, float)) or not 0 < self.cg_radius < float("inf")):
            raise ConfigError(
                "cg_radius must be a finite number > 0 (the CG trust region as a multiple of the "
                "query "
                "gradient's norm, e.g. 1.0) or null for plain CG, got "
                f"{self.cg_radius!r}")
        if self.msl:
            raise ConfigError(
                "msl does not apply to iMAML (its meta-gradient is taken at the inner loop's last "
                "step): "
                "set msl=False")
        if self.checkpoint_steps:
            raise ConfigError(
                "checkpoint_steps does not apply to iMAML (its inner loop keeps no graph, so "
                "memory "
                "does not grow with inner_steps): set checkpoint_steps=0")
