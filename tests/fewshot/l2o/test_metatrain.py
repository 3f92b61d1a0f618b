import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.l2o import (
    LearnedOptimizer,
    LSTMOptimizerConfig,
    MetaTrainConfig,
    QuadraticFamily,
    final_loss,
    make_baseline,
    meta_train,
    run_trajectory,
    tune_baselines,
    unroll,
)


def _double_quadratics(n=2, dim=3, seed=0):
    probs = QuadraticFamily(dim=dim, init_std=1.0).sample(n, 10,
                                                          torch.Generator().manual_seed(seed))
    probs.W, probs.y, probs.theta0 = probs.W.double(), probs.y.double(), probs.theta0.double()
    return probs


def test_meta_gradient_reaches_every_weight_and_matches_a_written_out_unroll(small_net):
    probs = _double_quadratics()
    names, params = zip(*small_net.named_parameters())
    meta, _, _ = unroll(small_net, probs, probs.init(), small_net.initial_state(6), 0, 3)
    ours = torch.autograd.grad(meta, params)
    # oracle: the three steps written out, each optimizee gradient computed on a detached copy of
    # theta
    theta, state, expected = probs.init(), small_net.initial_state(6), 0.0
    for t in range(3):
        frozen = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(probs.loss(frozen, t).sum(), frozen)
        update, state = small_net(g.reshape(-1), state)
        theta = theta + update.view_as(theta)
        expected = expected + probs.loss(theta, t + 1).mean()
    assert meta.item() == pytest.approx(expected.item(), rel=1e-12)
    ref = torch.autograd.grad(expected, params)
    for name, a, b in zip(names, ours, ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), name
        # every tensor is reached
        assert a.abs().max() > 1e-3 * max(r.abs().max() for r in ref), name


def test_meta_gradient_treats_optimizee_gradients_as_constants(small_net):
    """Oracle: finite differences of the meta-loss with grad_1 frozen at its value (d grad_t / d phi
    = 0)."""
    probs = _double_quadratics()
    theta0, params = probs.init(), list(small_net.parameters())
    meta, _, _ = unroll(small_net, probs, theta0, small_net.initial_state(6), 0, 2)
    ours = torch.autograd.grad(meta, params)

    def grad_of(theta):
        t = theta.detach().requires_grad_(True)
        return torch.autograd.grad(probs.loss(t, 0).sum(), t)[0]

    g0 = grad_of(theta0)
    with torch.no_grad():
        u0, s1 = small_net(g0.reshape(-1), small_net.initial_state(6))
    g1_frozen = grad_of(theta0 + u0.view_as(theta0))

    def frozen_meta():
        u0, s1 = small_net(g0.reshape(-1), small_net.initial_state(6))
        t1 = theta0 + u0.view_as(theta0)
        u1, _ = small_net(g1_frozen.reshape(-1), s1)
        return probs.loss(t1, 1).mean() + probs.loss(t1 + u1.view_as(t1), 2).mean()

    eps = 1e-6
    for p, g in zip(params, ours):
        for i in range(0, p.numel(), max(1, p.numel() // 4)):
            flat = p.data.view(-1)
            old = flat[i].item()
            flat[i] = old + eps
            up = frozen_meta().item()
            flat[i] = old - eps
            down = frozen_meta().item()
            flat[i] = old
            assert g.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5,
                                                         abs=1e-7)

    # ... and differs from the full derivative through grad_1(theta_1(phi)): the cut is real.
    u0, s1 = small_net(g0.reshape(-1), small_net.initial_state(6))
    t1 = theta0 + u0.view_as(theta0)
    loss1 = probs.loss(t1, 1)
    g1 = torch.autograd.grad(loss1.sum(), t1, create_graph=True)[0]
    u1, _ = small_net(g1.reshape(-1), s1)
    full = torch.autograd.grad(loss1.mean() + probs.loss(t1 + u1.view_as(t1), 2).mean(), params)
    assert max((a - b).abs().max().item() for a, b in zip(full, ours)) > 1e-6


def test_unroll_follows_the_same_trajectory_as_the_optimizer_class(small_net):
    probs = _double_quadratics(n=3, dim=4)
    theta, state, thetas = probs.init(), small_net.initial_state(12), []
    for start in (0, 2, 4):
        _, theta, state = unroll(small_net, probs, theta, state, start, 2)
        theta, state = theta.detach(), tuple(s.detach() for s in state)
        thetas.append(theta)
    p = probs.init().requires_grad_(True)
    opt = LearnedOptimizer([p], net=small_net)
    for t in range(6):
        opt.zero_grad()
        probs.loss(p, t).sum().backward()
        opt.step()
        if t % 2 == 1:
            assert torch.allclose(p.detach(), thetas[t // 2], atol=1e-12)


@pytest.mark.slow
def test_short_meta_training_beats_tuned_sgd_on_fresh_quadratics():
    config = MetaTrainConfig(net=LSTMOptimizerConfig(), epochs=2, iterations_per_epoch=20,
                             problems_per_iteration=32,
                             lr=3e-3,
                             val_problems=16, steps=100, unroll=20, seed=0)
    result = meta_train(QuadraticFamily(), QuadraticFamily(), config)
    assert [r.epoch for r in result.history] == [0, 1, 2] and result.best_epoch >= 1
    tuning = QuadraticFamily().sample(32, 100, torch.Generator().manual_seed(123))
    test = QuadraticFamily().sample(100, 100, torch.Generator().manual_seed(456))
    sgd_lr = tune_baselines(tuning, 100, names=("sgd",))["sgd"].lr
    sgd = final_loss(run_trajectory(test, make_baseline("sgd", sgd_lr), 100))
    learned = final_loss(run_trajectory(test, lambda ps: LearnedOptimizer(ps, net=result.net), 100))
    assert learned < sgd


@pytest.mark.parametrize("make,msg",
                         [
                             (lambda: MetaTrainConfig(unroll=30, steps=20),
                              "unroll \\(30\\) is longer than"),
                                      (lambda: MetaTrainConfig(epochs=0), "epochs must be"),
                                      (lambda: MetaTrainConfig(net=LSTMOptimizerConfig(p=-1.0)),
                                       "p must be"),
                                      (lambda: MetaTrainConfig(lr=0.0), "lr must be")])
def test_bad_protocols_are_refused_on_construction(make, msg):
    with pytest.raises(ConfigError, match=msg):
        make()


def test_meta_training_is_deterministic_and_leaves_the_global_rng_alone():
    config = MetaTrainConfig(epochs=1, iterations_per_epoch=2, problems_per_iteration=4,
                             val_problems=2, steps=10,
                             unroll=5, seed=3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = meta_train(QuadraticFamily(), QuadraticFamily(), config)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = meta_train(QuadraticFamily(), QuadraticFamily(), config)
    assert all(torch.equal(x, y)
               for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    assert [r.val_final_loss for r in a.history] == [r.val_final_loss for r in b.history]


def test_progress_bar_counts_iterations_on_stderr_only_when_asked(capsys):
    config = MetaTrainConfig(epochs=2, iterations_per_epoch=2, problems_per_iteration=4,
                             val_problems=2, steps=10,
                             unroll=5, seed=3)
    quiet = meta_train(QuadraticFamily(), QuadraticFamily(), config)
    assert capsys.readouterr() == ("", "")
    shown = meta_train(QuadraticFamily(), QuadraticFamily(), config, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "meta-training" in err and "0/4" in err  # epochs x iterations_per_epoch
    # bars draw nothing
    assert [r.val_final_loss for r in shown.history] == [r.val_final_loss for r in quiet.history]
