"""Add the issue-15 fields to the shipped meta-initializations' manifests, as publish now writes
them.

For each ``pretrained/*/manifest.json`` of kind meta-initialization: ``preprocessing`` (its dataset
store's), ``test_steps`` chosen on the config's validation episodes (``fewshot.reporting.steps``)
with ``val_by_steps``, and, when the chosen steps differ from the ``eval_steps`` the test number was
measured with, the test mean ± CI re-measured at ``test_steps`` on the same test episodes (the old
number is kept in ``notes``). The weights and their sha256 are untouched. Writes are atomic.
Idempotent.

Usage: ``FEWSHOT_DATA=/path/with/omniglot/store nice -n 10 python scripts/add_manifest_fields.py
[NAME ...]``
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import fewshot.pretrained as pt
from episodes import dataset_preprocessing
from episodes.files import atomic_write_text
from fewshot.config.manifest import MANIFEST, META_INITIALIZATION, read_manifest
from fewshot.reporting import EpisodeProtocol, report_on_fixed_episodes
from fewshot.reporting.publish import bn_results, step_fields
from fewshot.reporting.steps import choose_test_steps


def update(name: str) -> dict:
    model_dir = pt.locate(name)
    manifest = read_manifest(model_dir).to_dict()
    learner, cfg, _ = pt.load_with_config(name)
    if not cfg.data.is_regression:
        manifest["preprocessing"] = dataset_preprocessing(cfg.data.dataset, cfg.data.size).to_dict()
    test_steps, by_steps = choose_test_steps(learner, cfg)
    manifest.update(step_fields(test_steps, by_steps, cfg))
    if test_steps != manifest["eval_steps"]:
        protocol = EpisodeProtocol(episodes=manifest["episodes"], steps=test_steps,
                                   seed=manifest["eval_seed"])
        report = report_on_fixed_episodes(learner, cfg, protocol, split=manifest["split"])
        scale = 100 if manifest["metric"] == "accuracy" else 1
        note = (
            f"Test steps chosen on validation ({test_steps}); the test number was "
            f"{scale * manifest['mean']:.2f} "
            f"± {scale * manifest['ci95']:.2f} at {manifest['eval_steps']} steps before.")
        manifest["notes"] = " ".join(x for x in (manifest.get("notes", ""), note) if x)
        manifest.update(mean=report["mean"], ci95=report["ci95"], eval_steps=test_steps)
        # both batch-norm results at the chosen steps too
        if manifest.get("transductive") is not None:
            manifest.update(
                bn_results(learner, cfg, report, episodes=manifest["episodes"],
                           split=manifest["split"],
                                       steps=test_steps, seed=manifest["eval_seed"]))
    atomic_write_text(model_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    shipped = pt.package_dir()
    names = names or sorted(p.name for p in shipped.iterdir() if (p / MANIFEST).is_file()
                            and read_manifest(p).kind == META_INITIALIZATION)
    for name in names:
        assert Path(pt.locate(name)).parent == shipped, f"{name} is not a shipped model"
        m = update(name)
        by = ", ".join(f"{k}: {v:.4f}" for k, v in m["val_by_steps"].items())
        print(
            f"{name}: test_steps {m['test_steps']} (val {m['metric']} by steps {by}); test "
            f"{m['mean']:.4f} "
            f"± {m['ci95']:.4f} at {m['eval_steps']} steps", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
