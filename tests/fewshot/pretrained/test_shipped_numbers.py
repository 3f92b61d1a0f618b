"""Every shipped meta-initialization reproduces the numbers its manifest publishes: the test
accuracy (or MSE) and its CI in the model's shipped batch-norm mode, and the transductive one,
exactly.

The manifests' numbers are measured with one torch thread (`fewshot pretrained publish` under
`OMP_NUM_THREADS=1`, scripts/train_pretrained.sh; scripts/remeasure.py pins it): across thread
counts the summation order of a convolution moves a few predictions, so the test pins one thread as
well and then asks for equality, not a tolerance.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fewshot import pretrained
from fewshot.reporting import EpisodeProtocol, Execution, report_on_fixed_episodes
from tests.test_readme import shipped_models


@pytest.mark.slow
@pytest.mark.parametrize("name", shipped_models())
def test_a_shipped_model_reproduces_its_manifest(name, omniglot_root, one_thread):
    manifest = pretrained.show(name)
    learner, cfg, _ = pretrained.load_with_config(name, "cpu")
    cfg.data.root = str(omniglot_root)
    protocol = EpisodeProtocol(episodes=manifest["episodes"], steps=manifest.get("test_steps"),
                               seed=manifest["eval_seed"])
    kw = dict(split=manifest["split"], run=Execution("cpu"))
    report = report_on_fixed_episodes(learner, cfg, protocol, **kw)
    assert (report["mean"], report["ci95"]) == (manifest["mean"],
                                                manifest["ci95"]), json.dumps(report)
    trans = manifest.get("transductive")
    if trans and trans["bn_mode"] != report["bn_mode"]:
        other = report_on_fixed_episodes(learner, cfg, replace(protocol, bn_mode=trans["bn_mode"]),
                                         **kw)
        assert (other["mean"], other["ci95"]) == (trans["mean"], trans["ci95"])
