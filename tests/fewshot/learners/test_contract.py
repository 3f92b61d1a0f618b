"""The learner contract, checked for every registered learner: what training, evaluation,
checkpoints and resume rely on, whatever the update rule."""
from __future__ import annotations

import copy
import signal
import subprocess
import time

import pytest
import torch
from torch import nn

from episodes import TaskBatch
from fewshot.errors import ConfigError
from fewshot.learners import LEARNERS, MAML, GradientLearner, build_learner, learner_config
from fewshot.nn import StepBatchNorm1d
from fewshot.training.checkpoint import load_checkpoint
from tests.fewshot.training.test_resume import _assert_same_tree, _cmd, _env

# MAML with the other inner optimizers (fewshot.rules Adam, RMSprop, momentum SGD): settings of
# "maml"
VARIANTS: dict[str, tuple[str, dict]] = {
    "maml+adam": ("maml", {"inner_optimizer": "adam", "inner_lr": 0.01, "learn_inner_lr": True}),
    "maml+rmsprop": ("maml", {"inner_optimizer": "rmsprop", "inner_lr": 0.01, "inner_momentum": 0.5,
                              "inner_centered": True}),
    "maml+nesterov": ("maml", {"inner_momentum": 0.9, "inner_nesterov": True, "inner_lr": 0.1}),
}
NAMES = sorted(LEARNERS) + sorted(VARIANTS)
# one resume run per learner class other than MAML (tests/fewshot/training/test_resume.py covers
# it), and Adam
RESUME = sorted({spec.cls: name for name, spec in sorted(LEARNERS.items(), reverse=True)
                 # imaml: with its CG solve
                 if spec.cls is not MAML}.values()) + ["maml+adam", "imaml"]


def _registry(name: str) -> tuple[str, dict]:
    """The registered learner name behind a contract name, and the settings the variant adds."""
    return VARIANTS.get(name, (name, {}))


def _config(name: str, overrides: dict | None = None):
    base, extra = _registry(name)
    return learner_config(base, {**extra, **(overrides or {})})


def _model(seed: int = 0, ways: int = 3) -> nn.Module:
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(4, 8), StepBatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                         nn.Linear(8, ways)).double()


def _batch(seed: int = 0, b: int = 3, ways: int = 3, shots: int = 2, queries: int = 3) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(b, ways, 1, 4, generator=g, dtype=torch.float64) * 2
    noise_s = torch.randn(b, ways, shots, 4, generator=g, dtype=torch.float64)
    noise_q = torch.randn(b, ways, queries, 4, generator=g, dtype=torch.float64)
    sx = (centres + noise_s).reshape(b, ways * shots, 4)
    qx = (centres + noise_q).reshape(b, ways * queries, 4)
    sy = torch.arange(ways).repeat_interleave(shots).expand(b, -1).clone()
    qy = torch.arange(ways).repeat_interleave(queries).expand(b, -1).clone()
    return TaskBatch(sx, sy, qx, qy, ways)


def _learner(name: str, seed: int = 0, **overrides) -> GradientLearner:
    cfg = _config(name, {"inner_steps": 2, **overrides})
    learner = build_learner(_registry(name)[0], _model(seed), cfg)
    assert isinstance(learner, GradientLearner)
    return learner


def _grads(learner: GradientLearner, batch: TaskBatch):
    out = learner.meta_loss(batch)
    params = list(learner.parameters())
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    return out, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("name", NAMES)
def test_loop_and_vmap_give_the_same_loss_gradients_and_buffers(name):
    loop = _learner(name, task_batching="loop")
    vmapped = _learner(name, task_batching="vmap")
    vmapped.load_state_dict(loop.state_dict())  # same weights and same noise generator state
    batch = _batch(1)
    (a, ga), (b, gb) = _grads(loop, batch), _grads(vmapped, batch)
    assert a.loss.item() == pytest.approx(b.loss.item(), abs=1e-12)
    assert a.metrics == pytest.approx(b.metrics, abs=1e-12)
    for (pname, _), x, y in zip(loop.named_parameters(), ga, gb):
        assert torch.allclose(x, y, atol=1e-10), pname
    assert any(g.abs().sum() > 0 for g in ga)
    for (k, x), (_, y) in zip(loop.state_dict().items(), vmapped.state_dict().items()):
        # BN write-back and noise state
        assert torch.allclose(x.double(), y.double(), atol=1e-12), k


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_evaluate_and_adapt_write_nothing_and_agree(name, mode):
    learner = _learner(name)
    learner.train(mode == "train")
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    batch = _batch(2)
    first = learner.evaluate(batch, steps=2)
    again = learner.evaluate(batch, steps=2)
    assert all(torch.equal(first[k], again[k]) for k in first)  # no noise drawn, nothing written
    task = batch.task(0)
    params = learner.adapt(task.support_x, task.support_y, steps=2)
    logits = learner.predict(task.query_x, params, steps=2)
    acc = (logits.argmax(-1) == task.query_y).double().mean()
    assert acc.item() == pytest.approx(first["accuracy"][0].item(), abs=1e-12)
    after = learner.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_restores_weights_buffers_and_noise(name):
    learner = _learner(name)
    opt = torch.optim.SGD(learner.parameters(), lr=0.05)
    for i in range(2):
        opt.zero_grad()
        learner.meta_loss(_batch(3 + i)).loss.backward()
        opt.step()
    fresh = _learner(name, seed=7)
    fresh.load_state_dict(copy.deepcopy(learner.state_dict()))
    batch = _batch(9)
    # training mode: same meta-loss (same noise draws too), and the same buffers afterwards
    assert learner.meta_loss(batch).loss.item() == fresh.meta_loss(batch).loss.item()
    for (k, x), (_, y) in zip(learner.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(x, y), k
    a, b = learner.eval().evaluate(batch), fresh.eval().evaluate(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_bad_configs_get_one_clear_error(name):
    for bad in ({"inner_steps": 0}, {"inner_steps": 1.5}, {"eval_steps": -1}, {"bn_mode": "batch"},
                {"task_batching": "gpu"}, {"seed": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            _config(name, bad)
    with pytest.raises(ConfigError, match="unknown"):
        _config(name, {"inner_stepz": 2})
    with pytest.raises(ConfigError, match="needs a"):
        build_learner(_registry(name)[0], _model(), object())
    if "inner_lr" in _config(name).__dataclass_fields__:  # finite in Python, overflows float32
        with pytest.raises(ConfigError, match="does not fit the model's dtype torch.float32"):
            build_learner(_registry(name)[0], _model().float(), _config(name, {"inner_lr": 1e39}))


@pytest.mark.slow
@pytest.mark.parametrize("name", RESUME)
def test_sigkill_then_resume_is_bit_identical(name, tmp_path):
    """Each learner class through the CLI: kill mid-run, resume, compare with an uninterrupted
    run."""
    env = _env(tmp_path)
    base, settings = _registry(name)
    extra = ["--set", f"learner.name={base}", "--set", "learner.inner_steps=1"]
    for key, value in settings.items():
        extra += ["--set",
                  f"learner.{key}={str(value).lower() if isinstance(value, bool) else value}"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(full) + extra, env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(_cmd(killed) + extra, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = killed / "last.pt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists() and load_checkpoint(ckpt)["iteration"] >= 20:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run(_cmd(killed) + extra, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(killed / "last.pt")
    for key in ("learner", "optimizer", "sources", "rng"):
        _assert_same_tree(a[key], b[key], key)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_meta_backward_equals_meta_loss_backward(name, batching):
    """Task-by-task backward (the training loop's path) accumulates the same meta-gradient, writes
    the same buffers and draws the same noise as one backward of ``meta_loss``."""
    a = _learner(name, task_batching=batching)
    b = _learner(name, task_batching=batching)
    b.load_state_dict(a.state_dict())
    batch = _batch(4)
    out_a = a.meta_loss(batch)
    out_a.loss.backward()
    out_b = b.meta_backward(batch)
    assert out_b.loss.requires_grad is False
    assert out_a.loss.item() == pytest.approx(out_b.loss.item(), abs=1e-12)
    assert out_a.metrics == pytest.approx(out_b.metrics, abs=1e-12)
    for (pname, p), q in zip(a.named_parameters(), b.parameters()):
        ga = torch.zeros_like(p) if p.grad is None else p.grad
        gb = torch.zeros_like(q) if q.grad is None else q.grad
        assert torch.allclose(ga, gb, atol=1e-12), pname
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def _orders(name: str) -> list[bool]:
    """The derivative orders a learner accepts (the LSTM meta-learner is first order only)."""
    try:
        _config(name, {"first_order": False})
    except ConfigError:
        return [True]
    return [False, True]


def _accepts(name: str, **setting) -> bool:
    """Whether learner ``name`` takes ``setting`` (Reptile has no differentiated query loss, so no
    MSL)."""
    try:
        _config(name, setting)
    except ConfigError:
        return False
    return True


# iMAML refuses checkpoint_steps and MSL: its inner loop keeps no graph (nothing to recompute) and
# its
# meta-gradient is taken at the last step only
CHECKPOINTABLE = [n for n in NAMES if _accepts(n, checkpoint_steps=2)]


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(CHECKPOINTABLE)))
def test_learners_without_recomputation_refuse_checkpoint_steps_and_msl_clearly(name):
    for key in ("checkpoint_steps", "msl"):
        with pytest.raises(ConfigError, match=f"{key} does not apply"):
            _config(name, {key: 2 if key == "checkpoint_steps" else True})


@pytest.mark.parametrize("name, first_order",
                         [(n, fo) for n in CHECKPOINTABLE for fo in _orders(n)])
def test_checkpoint_steps_gives_the_same_loss_gradients_buffers_and_noise(name, first_order):
    """Recomputing the inner loop (``checkpoint_steps``) changes memory, not numbers: the same
    meta-loss, meta-gradients (model and rule parameters), written buffers, noise draws and adapted
    parameters as storing every step, with MSL (several kept steps) and running BN statistics."""
    cfg = dict(inner_steps=3, msl=_accepts(name, msl=True), bn_mode="running",
               first_order=first_order,
               task_batching="loop")
    plain = _learner(name, **cfg)
    ckpt = _learner(name, **cfg, checkpoint_steps=2)
    ckpt.load_state_dict(plain.state_dict())
    batch = _batch(5)
    (out_p, g_p), (out_c, g_c) = _grads(plain, batch), _grads(ckpt, batch)
    assert out_p.loss.item() == pytest.approx(out_c.loss.item(), abs=1e-12)
    assert out_p.metrics == pytest.approx(out_c.metrics, abs=1e-12)
    assert max(g.abs().max().item() for g in g_p) > 0
    for (pname, _), a, b in zip(plain.named_parameters(), g_p, g_c):
        assert torch.allclose(a, b, atol=1e-10, rtol=0), pname
    for (k, x), (_, y) in zip(plain.state_dict().items(), ckpt.state_dict().items()):
        assert torch.equal(x, y), k  # BN running statistics and the noise generator state
    t = batch.task(0)
    adapted_p, adapted_c = plain.adapt(t.support_x, t.support_y), ckpt.adapt(t.support_x,
                                                                             t.support_y)
    ga = torch.autograd.grad(sum(v.sum() for v in adapted_p.params.values()),
                             list(plain.parameters()),
                             allow_unused=True)
    gb = torch.autograd.grad(sum(v.sum() for v in adapted_c.params.values()),
                             list(ckpt.parameters()),
                             allow_unused=True)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None) and (a is None
                                               or torch.allclose(a, b, atol=1e-10, rtol=0))


@pytest.mark.parametrize("name", CHECKPOINTABLE)
def test_checkpoint_steps_config_errors_and_batching(name):
    with pytest.raises(ConfigError, match="checkpoint_steps must be"):
        _config(name, {"checkpoint_steps": -1})
    with pytest.raises(ConfigError, match="checkpoint_steps recomputes on the per-task loop only"):
        _config(name, {"checkpoint_steps": 2, "task_batching": "vmap"})
    # auto: the loop while training, vmap still free in evaluation
    learner = _learner(name, checkpoint_steps=1)
    assert learner.task_batching_for("cpu", 10) == "loop"
    with torch.no_grad():
        other = _learner(name).task_batching_for("cpu", 10)
        assert learner.task_batching_for("cpu", 10) == other == "vmap"
