"""Distilled training sets as shipped models: ``model.safetensors`` (the distilled images, labels
and learned step sizes, and the fixed LeNet initialisation they were distilled for),
``manifest.json`` (``"kind": "distilled-data"``, the run's config and its test accuracy) and
``images.png`` (the images, one row per step, one column per image of a step).

Usage::

    publish_distilled("runs/mnist-distill-10", "mnist-distill-10", dest="pretrained")
    run, cfg, manifest = load_distilled("mnist-distill-10")
    trained_network_accuracies(run, cfg, seed=0)      # what `fewshot eval mnist-distill-10` prints
"""
from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from episodes.files import atomic_write_bytes, atomic_write_text, hardware, sha256_file

from ..config.distill import PAPER_RESULTS, DistillConfig
from ..config.manifest import DISTILLED_DATA, MANIFEST, WEIGHTS, Manifest, manifest_of
from ..config.typed import from_dict, to_dict
from ..errors import CheckpointError, FewshotError
from ..training.checkpoint import load_checkpoint
from ..training.distill import (
    IDENTITY,
    NORMALISATION,
    RESULT_FILE,
    VALIDATION_DRAW,
    Distillation,
    mean_ci,
    real_data,
    trained_network_accuracies,
    trained_network_hits,
)
from ..training.metrics_log import METRICS_FILE, read_metrics
from ..training.run_folder import BEST, LAST
from .registry import locate, verify

IMAGES_PNG = "images.png"


def publish_distilled(run_dir: str | os.PathLike, name: str, *, dest: str | os.PathLike,
                      inits: int | None = None, seed: int = 0) -> Manifest:
    """Publish the distillation run in ``run_dir`` as model ``name`` under ``dest``: its weights
    (the last state, or ``best.pt`` where it beats it beyond noise: ``choose_distilled_state``),
    its image grid and a manifest with the test accuracy re-measured here (the fixed
    initialisation, or ``inits`` fresh ones, default the config's ``eval_inits``, from ``seed``)
    and the run's validation curve."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULT_FILE).is_file():
        raise CheckpointError(f"{run_dir} holds no finished distillation run ({RESULT_FILE} is "
                              "missing): run `fewshot distill` there to the end first")
    last = load_checkpoint(run_dir / LAST, expect=IDENTITY)
    cfg = from_dict(DistillConfig, last["config"])
    run = Distillation(cfg)
    run.load_state_dict(last["learner"])
    ckpt, selection = last, None
    if (run_dir / BEST).is_file():
        best = load_checkpoint(run_dir / BEST, expect=IDENTITY)
        best_run = Distillation(cfg)
        best_run.load_state_dict(best["learner"])
        selection = choose_distilled_state(run, best_run, cfg,
                                           last_iteration=int(last["iteration"]),
                                           best_iteration=int(best["iteration"]))
        if selection["chosen"] == "best":
            ckpt, run = best, best_run
    curve = None
    if (run_dir / METRICS_FILE).is_file():
        curve = [{k: v for k, v in r.items() if k != "kind"}
                 for r in read_metrics(run_dir / METRICS_FILE, strict=False)
                 if r.get("kind") == "val" and r.get("iteration", 0) <= int(last["iteration"])]
    accuracies = trained_network_accuracies(run, cfg, seed=seed, inits=inits)
    mean, ci95 = mean_ci(accuracies)
    model_dir = Path(dest) / name
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in run.state_dict().items()}
    atomic_write_bytes(model_dir / WEIGHTS, st_save(tensors, metadata={"name": name,
                                                                       "kind": DISTILLED_DATA}),
                       error=FewshotError)
    atomic_write_bytes(model_dir / IMAGES_PNG, image_grid(run, cfg), error=FewshotError)
    portable = {**to_dict(cfg), "data_root": None}
    manifest = manifest_of({
        "name": name, "kind": DISTILLED_DATA, "preset": cfg.preset, "dataset": cfg.dataset,
        "backbone": "lenet", "metric": "accuracy", "mean": mean, "ci95": ci95,
        "eval_seed": seed, "eval_inits": len(accuracies), "images": cfg.images,
        "split": "test", "checkpoint_iteration": int(ckpt["iteration"]), "selection": selection,
        "validation_curve": curve or None,
        "trained_iterations": int(last["iteration"]), "preset_iterations": cfg.iterations,
        "hardware": hardware(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": portable, "weights": WEIGHTS, "sha256": sha256_file(model_dir / WEIGHTS),
        "paper": PAPER_RESULTS.get(cfg.preset or ""),
    }, f"of '{name}'")
    atomic_write_text(model_dir / MANIFEST, manifest.to_json(), error=FewshotError)
    return manifest


def choose_distilled_state(last: Distillation, best: Distillation, cfg: DistillConfig, *,
                           last_iteration: int, best_iteration: int) -> dict:
    """Which state of a run to publish, by the rule meta-initializations follow
    (``fewshot.reporting.selection``): the last state, unless the best validated one beats it by
    more than the 95% interval of their paired difference, here per training image (all 60,000,
    each scored by the fraction of the validation networks that classify it right).  The manifest
    records the returned evidence."""
    evidence = {"last_iteration": last_iteration, "best_iteration": best_iteration,
                "split": "train", "metric": "accuracy"}
    if best_iteration == last_iteration:
        return {"chosen": "last", **evidence,
                "reason": "the best validated state is the last state"}
    x, y = real_data(cfg, "train")
    scores = []
    for state in (last, best):
        hits = trained_network_hits(state, cfg, x, y, seed=cfg.seed + VALIDATION_DRAW,
                                    inits=cfg.val_inits)
        scores.append(torch.stack(hits).double().mean(0))
    gain = scores[1] - scores[0]
    difference = float(gain.mean())
    ci95 = 1.96 * float(gain.std(unbiased=True)) / len(gain) ** 0.5
    beats = difference > ci95
    what = (f"accuracy {'+' if difference >= 0 else '-'}{abs(difference):.4f} ± {ci95:.4f} on "
            f"{len(gain):,} training images")
    verdict = "beats" if beats else "does not beat"
    return {"chosen": "best" if beats else "last", **evidence, "images": len(gain),
            "networks": 1 if cfg.init == "fixed" else cfg.val_inits,
            "last_mean": float(scores[0].mean()), "best_mean": float(scores[1].mean()),
            "difference": difference, "difference_ci95": ci95,
            "reason": f"the state of iteration {best_iteration} {verdict} the last state "
                      f"({last_iteration}) by more than the 95% interval of the paired "
                      f"difference ({what})"}


def load_distilled(name: str) -> tuple[Distillation, DistillConfig, Manifest]:
    """(run, config, manifest) of the distilled training set ``name`` (a pretrained name), its
    weights verified against the manifest first."""
    manifest = verify(name)
    if manifest.kind != DISTILLED_DATA:
        raise CheckpointError(f"pretrained model '{name}' is a {manifest.kind}, not distilled "
                              "data: load it with fewshot.pretrained.load")
    cfg = from_dict(DistillConfig, dict(manifest.config or {}))
    run = Distillation(cfg)
    path = locate(name) / manifest.weights
    try:
        run.load_state_dict(load_file(str(path)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"distilled data {path} cannot be loaded ({exc}): re-publish it") \
            from exc
    return run, cfg, manifest


def distilled_table(names: list[str]) -> str:
    """A markdown table of the distilled training sets ``names`` (pretrained names): what each is,
    its test accuracy (mean ± 95% CI over the networks its manifest measured) and the paper's."""
    lines = ["| name | images | labels | initialisation | step sizes | test accuracy (%) | "
             "networks | iterations | paper |", "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        m = verify(name)
        cfg = dict(m.config or {})
        labels = "learned soft" if cfg.get("soft_labels") else "hard"
        init = "fixed (shipped)" if cfg.get("init") == "fixed" else "random (fresh per network)"
        rates = "per layer and step" if cfg.get("per_layer_step_sizes") else "per step"
        accuracy = f"{100 * (m.mean or 0.0):.2f} ± {100 * (m.ci95 or 0.0):.2f}"
        lines.append(f"| {name} | {m['images']} {m.dataset} | {labels} | {init} | {rates} | "
                     f"{accuracy} | {m['eval_inits']} | {m.trained_iterations:,} | "
                     f"{m.paper or 'n/a'} |")
    return "\n".join(lines) + "\n"


def image_grid(run: Distillation, cfg: DistillConfig, *, scale: int = 2) -> bytes:
    """A PNG of the distilled images (rows: steps; columns: the images of a step, class order),
    shown as the network sees them: un-normalised to [0, 255] and clipped."""
    mean, std = NORMALISATION[cfg.dataset]
    images = run.data.images.detach().float()  # [steps, n, 1, 28, 28]
    pixels = ((images * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    steps, n = pixels.shape[:2]
    gap = 2
    grid = torch.full((steps * (28 + gap) - gap, n * (28 + gap) - gap), 64, dtype=torch.uint8)
    for s in range(steps):
        for i in range(n):
            grid[s * 30:s * 30 + 28, i * 30:i * 30 + 28] = pixels[s, i, 0]
    image = Image.fromarray(grid.numpy(), mode="L")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
