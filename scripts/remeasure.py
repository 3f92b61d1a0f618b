"""Re-measure shipped models' test numbers with the current evaluation code, in place in their
manifests.

Why: evaluation changed under shipped weights (best-step adaptation, issue 23: a task whose support
loss ends above its lowest value predicts with the lowest-support-loss step), so a manifest measured
before would no longer be what `fewshot eval NAME` prints. Weights, test steps and episodes stay as
published; only the measured numbers (both batch-norm modes) are re-computed, with one torch thread,
and the manifest says so. Models re-published from a run (`fewshot pretrained publish`) need none of
this.

Usage: ``OMP_NUM_THREADS=1 FEWSHOT_DATA=<root> python scripts/remeasure.py NAME [NAME ...]``
"""
from __future__ import annotations

import json
import sys

import torch

from episodes.files import atomic_write_text
from fewshot import pretrained
from fewshot.errors import FewshotError
from fewshot.reporting import EpisodeProtocol, Execution, report_on_fixed_episodes
from fewshot.reporting.publish import bn_results


def remeasure(name: str) -> dict:
    manifest = pretrained.show(name)
    learner, cfg, _ = pretrained.load_with_config(name, "cpu")
    protocol = EpisodeProtocol(episodes=manifest["episodes"], steps=manifest.get("test_steps"),
                               seed=manifest["eval_seed"])
    split, run = manifest["split"], Execution("cpu")
    report = report_on_fixed_episodes(learner, cfg, protocol, split=split, run=run)
    bn = bn_results(learner, cfg, report, protocol, split=split, run=run)
    before = {k: manifest.get(k) for k in ("mean", "ci95")}
    manifest.update(mean=report["mean"], ci95=report["ci95"], **bn)
    manifest["measured_with"] = {"best_step": bool(learner.config.best_step),
                                 "threads": torch.get_num_threads(),
                                 "before": before}
    path = pretrained.locate(name) / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n", error=FewshotError)
    return {"name": name, "before": before,
            "after": {"mean": report["mean"], "ci95": report["ci95"]},
            "transductive": bn.get("transductive")}


if __name__ == "__main__":
    torch.set_num_threads(1)
    for n in sys.argv[1:]:
        print(json.dumps(remeasure(n)), flush=True)
