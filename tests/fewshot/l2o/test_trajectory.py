import torch

from fewshot.l2o import QuadraticFamily, final_loss, make_baseline, run_trajectory


def test_sgd_trajectory_equals_hand_written_gradient_descent():
    probs = QuadraticFamily(dim=5).sample(4, 10, torch.Generator().manual_seed(0))
    curve = run_trajectory(probs, make_baseline("sgd", 0.01), 10)
    theta = probs.init().double()
    W, y = probs.W.double(), probs.y.double()
    for t in range(11):
        loss = ((W @ theta.unsqueeze(-1)).squeeze(-1) - y).pow(2).sum(-1)
        assert torch.allclose(curve[:, t].double(), loss, rtol=1e-4)
        grad = 2 * (
            W.transpose(1, 2) @ ((W @ theta.unsqueeze(-1)).squeeze(-1) - y).unsqueeze(-1)).squeeze(
                -1)
        theta = theta - 0.01 * grad


def test_batched_problems_are_optimized_independently():
    """Adam on the [B, P] batch equals Adam on each problem alone (every optimizer here is
    coordinatewise)."""
    probs = QuadraticFamily(dim=5).sample(3, 15, torch.Generator().manual_seed(1))
    batched = run_trajectory(probs, make_baseline("adam", 0.1), 15)
    for b in range(3):
        single = QuadraticFamily(dim=5).sample(3, 15, torch.Generator().manual_seed(1))
        single.W, single.y, single.theta0 = single.W[b:b + 1], single.y[b:b + 1], single.theta0[b:b
                                                                                                + 1]
        assert torch.allclose(run_trajectory(single, make_baseline("adam", 0.1), 15)[0], batched[b],
                              rtol=1e-5)


def test_divergence_scores_infinite_final_loss():
    probs = QuadraticFamily().sample(4, 30, torch.Generator().manual_seed(0))
    assert final_loss(run_trajectory(probs, make_baseline("sgd", 10.0), 30)) == float("inf")
    assert final_loss(run_trajectory(probs, make_baseline("sgd", 0.001), 30)) < float(
        probs.loss(probs.init(),
                                                                                                 0).mean())
