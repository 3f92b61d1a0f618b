"""Every shipped distilled training set reproduces the test accuracy its manifest publishes,
exactly: the same networks (the shipped initialisation, or the same fresh ones drawn from the
manifest's seed) trained on its images with its learned step sizes, tested on the 10,000 test
images, one torch thread (as `fewshot pretrained publish` measured it)."""
from __future__ import annotations

import pytest

from fewshot.pretrained import load_distilled
from fewshot.training.distill import mean_ci, trained_network_accuracies
from tests.test_readme import shipped_of_kind


@pytest.mark.slow
@pytest.mark.parametrize("name", shipped_of_kind("distilled-data"))
def test_a_shipped_distillation_reproduces_its_manifest(name, mnist_root, one_thread):
    run, cfg, manifest = load_distilled(name)
    cfg.data_root = str(mnist_root)
    accuracies = trained_network_accuracies(run, cfg, seed=manifest["eval_seed"],
                                            inits=manifest["eval_inits"])
    assert len(accuracies) == manifest["eval_inits"]
    assert mean_ci(accuracies) == (manifest["mean"], manifest["ci95"])
