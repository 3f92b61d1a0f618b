import json

import pytest
import torch
from PIL import Image

from fewshot.errors import ConfigError
from fewshot.l2o import LearnedOptimizer, run_trajectory
from fewshot.pretrained import save_learned_optimizer
from fewshot.reporting.l2o_experiments import (
    EXPERIMENTS,
    PROBLEMS,
    TEST_SEED,
    build_family,
    final_table,
    run_experiment,
    training_preset,
    write_outputs,
)


def test_every_experiment_names_a_problem_and_the_problems_follow_the_paper():
    assert set(EXPERIMENTS) >= {"quadratic", "mnist", "mnist-40", "mnist-2layer", "mnist-relu",
                                "mnist-200steps",
                                "fashion-mnist"}
    assert all(e.problem in PROBLEMS for e in EXPERIMENTS.values())
    assert EXPERIMENTS["mnist-200steps"].steps == 200 and PROBLEMS["mnist-2layer"].hidden == (20,
                                                                                              20)
    mnist = training_preset("mnist")
    assert (mnist.steps, mnist.unroll, mnist.iterations_per_epoch, mnist.net.p,
            mnist.net.output_scale) == (
        100, 20, 100, 10.0, 0.1)


def test_quadratic_experiment_writes_png_and_json_consistent_with_a_direct_run(small_net, tmp_path):
    save_learned_optimizer(small_net.float(), tmp_path / "opt", name="tiny")
    result = run_experiment("quadratic", optimizer=tmp_path / "opt", test_problems=4,
                            tune_problems=2, steps=10)
    png, js = write_outputs(result, tmp_path / "out")
    assert Image.open(png).size[0] > 300
    data = json.loads(js.read_text())
    assert set(data["curves"]) == {"learned", "sgd", "rmsprop", "adam", "nag"}
    assert all(len(c["mean"]) == 11 for c in data["curves"].values())
    test = build_family("quadratic").sample(4, 10, torch.Generator().manual_seed(TEST_SEED))
    direct = run_trajectory(test, lambda ps: LearnedOptimizer(ps, net=small_net.float()),
                            10).double().mean(0)
    assert data["final"]["learned"]["mean"] == pytest.approx(direct[-1].item(), rel=1e-6)
    assert data["final"]["sgd"]["lr"] in data["lr_grid"]
    assert "| quadratic | 10 |" in final_table([data])


def test_mlp_experiment_runs_on_real_fashion_mnist(small_net, tmp_path, mnist_root):
    save_learned_optimizer(small_net.float(), tmp_path / "opt", name="tiny")
    result = run_experiment("fashion-mnist", optimizer=tmp_path / "opt", test_problems=2,
                            tune_problems=2, steps=3,
                            root=mnist_root)
    start = result["curves"]["sgd"]["mean"][0]
    assert 1.5 < start < 3.5  # cross-entropy of 10 classes near ln 10 at initialization


def test_bad_experiment_requests_are_refused(small_net, tmp_path):
    with pytest.raises(ConfigError, match="unknown experiment"):
        run_experiment("cifar")
    with pytest.raises(ConfigError, match=r"test_problems \(a CI needs two\) must be >= 2"):
        run_experiment("quadratic", test_problems=1)
    with pytest.raises(ConfigError, match="unknown problem"):
        build_family("svhn")
