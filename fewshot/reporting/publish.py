"""Publish a run's best weights as a pretrained model, and render the results table from manifests.

``publish("runs/sine", "sinusoid-maml", dest="pretrained")`` writes ``pretrained/sinusoid-maml/``;
there is no default destination, so nothing is ever written into the installed package by accident.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from safetensors.torch import save as st_save

from episodes import dataset_preprocessing, split_protocol
from episodes.files import atomic_write_bytes, atomic_write_text, hardware, sha256_file

from .. import pretrained as registry
from ..config import PRESETS, TrainConfig, get_preset, paper_result
from ..config.manifest import MANIFEST, META_INITIALIZATION, WEIGHTS, manifest_of
from ..errors import CheckpointError, FewshotError
from ..learners import GradientLearner
from ..nn.batchnorm import has_running_stats
from ..pretrained.training_state import write_training_state
from ..training.build import VAL_SEED, backbone_identity, build_learner_from_config, run_identity
from ..training.checkpoint import load_checkpoint, load_learner_state
from ..training.clock import summary as clock_summary
from ..training.metrics_log import read_metrics
from ..training.run_folder import BEST, LAST, METRICS_FILE, load_run_config
from .forecast import forecast_curve
from .report import EpisodeProtocol, Execution, report_on_fixed_episodes
from .selection import choose_checkpoint
from .steps import choose_test_steps


def step_fields(test_steps: int, val_by_steps: dict[int, float], cfg: TrainConfig) -> dict:
    """The manifest fields of the step choice: ``test_steps`` (what ``fewshot.pretrained.load`` uses
    by default), the validation metric per step count and the episodes it was measured on."""
    return {"test_steps": test_steps, "val_by_steps": {str(k): v for k, v in val_by_steps.items()},
            "val_episodes": cfg.val_episodes, "val_seed": VAL_SEED}


def publish(run_dir: str | Path, name: str, *, dest: str | Path, episodes: int = 600,
            split: str | None = None, notes: str = "", budget: str = "",
            device: str = "cpu") -> dict:
    """Copy ``run_dir``'s published weights to ``dest/name/model.safetensors`` (its last state,
    unless the best validated checkpoint beats it beyond noise: ``fewshot.reporting.selection``),
    choose the test-time steps on the validation episodes (``choose_test_steps``), evaluate with
    them on the fixed test set exactly as ``fewshot eval`` of the published model does, and write
    ``manifest.json`` (sha256, results, ``test_steps`` with the validation metric per step count,
    the image ``preprocessing``, provenance). Beside the weights it ships the run's training state
    (``fewshot.pretrained.training_state``: ``last.pt``, ``best.pt`` when it differs, the metrics
    log; checksummed under ``training_state``), so that ``fewshot train --from-pretrained NAME``
    continues the run exactly where it stopped, and the manifest records the ``validation_curve``
    (iteration, validation metric, ci95) of the run.

    ``notes``: what differs from the preset besides the iteration count; ``budget``: the compute the
    training got (e.g. "25 CPU-minutes, 1 thread"), so models trained under a budget can be
    compared."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    last_path, best_path = run_dir / LAST, run_dir / BEST
    if not last_path.exists() and not best_path.exists():
        raise CheckpointError(
            f"{run_dir} holds no checkpoint ({LAST} or {BEST}): train the run first")
    checkpoints = {key: load_checkpoint(path, expect=run_identity(cfg))
                   for key, path in (("last", last_path), ("best", best_path)) if path.exists()}
    learners = {key: build_learner_from_config(cfg, "cpu") for key in checkpoints}
    for key, learner in learners.items():
        load_learner_state(learner, checkpoints[key]["learner"])
        learner.to(device)
    selection = None
    if len(checkpoints) == 2:
        selection = choose_checkpoint(learners["last"], learners["best"], cfg, device=device,
                                      last_iteration=int(checkpoints["last"]["iteration"]),
                                      best_iteration=int(checkpoints["best"]["iteration"]))
    chosen = selection.chosen if selection is not None else next(iter(checkpoints))
    ckpt, learner = checkpoints[chosen], learners[chosen]
    path = last_path if chosen == "last" else best_path
    test_steps, val_by_steps = choose_test_steps(learner, cfg, device=device)
    protocol = EpisodeProtocol(episodes=episodes, steps=test_steps)
    report = report_on_fixed_episodes(learner, cfg, protocol, split=split, run=Execution(device))
    bn = bn_results(learner, cfg, report, protocol, split=split, run=Execution(device))
    dest = Path(dest)
    model_dir = dest / name
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in learner.state_dict().items()}
    blob = st_save(tensors, metadata={"name": name, "learner": cfg.learner.name})
    atomic_write_bytes(model_dir / WEIGHTS, blob, error=FewshotError)
    portable = cfg.to_dict()
    # where the data lives is the user's: $FEWSHOT_DATA or `fewshot eval --root`
    portable["data"]["root"] = None
    portable["device"] = "auto"
    preset_iterations = get_preset(cfg.preset).iterations if cfg.preset in PRESETS else None
    published_iteration = int(ckpt["iteration"])
    last = checkpoints.get("last", ckpt)
    trained = int(last["iteration"])
    curve = validation_curve(run_dir / METRICS_FILE, trained)
    remaining = max(cfg.iterations - trained, 0)
    forecast = (forecast_curve(curve or [], cfg.iterations, metric=report["metric"])
                if remaining else None)
    auto_note = unfinished_note(name, trained, cfg.iterations, preset_iterations, forecast)
    plain = {
        "name": name,
        "learner": cfg.learner.name,
        "backbone": backbone_identity(cfg),
        "preset": cfg.preset,
        "dataset": cfg.data.dataset,
        "train_split": cfg.data.train_split,
        "split": report["split"],
        "split_protocol": split_protocol(cfg.data.dataset, report["split"]),
        "ways": report["ways"],
        "shots": report["shots"],
        "queries": report["queries"],
        "metric": report["metric"],
        "mean": report["mean"],
        "ci95": report["ci95"],
        "episodes": report["episodes"],
        "eval_seed": report["seed"],
        "eval_steps": report["steps"],
        **step_fields(test_steps, val_by_steps, cfg),
        "bn_mode": report["bn_mode"],  # the mode "mean" was measured in (the config's)
        **bn,
        # the weights published (``selection`` says why)
        "checkpoint_iteration": published_iteration,
        "selection": selection.to_dict() if selection is not None else None,
        "trained_iterations": trained,
        "full_protocol": full_protocol(cfg, trained, preset_iterations, notes),
        "train_iterations": cfg.iterations,
        "preset_iterations": preset_iterations,
        "seed": cfg.seed,
        "hardware": hardware(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "paper": paper_result(cfg.preset),
        "notes": " ".join(x for x in (auto_note, notes) if x),
        "protocol_changes": notes,  # what differs from the preset besides the iteration count
        "training_budget": budget or None,
        # the whole run's (last.pt), not up to the best
        "training_time": clock_summary(last.get("clock")),
        "validation_curve": curve,
        # an unfinished run: what is left of it and where its curve is heading
        "remaining_iterations": remaining,
        "forecast": forecast,
        "weights": WEIGHTS,
        "sha256": sha256_file(model_dir / WEIGHTS),
        # what `fewshot train --from-pretrained` continues: the state where the run stopped
        # (docs/pretrained.md)
        "training_state": write_training_state(model_dir,
                                               last_path=last_path if last_path.exists() else path,
                                               best_path=best_path if best_path.exists() else path,
                                               metrics_path=run_dir / METRICS_FILE),
        "config": portable,
    }
    if not cfg.data.is_regression:
        plain["preprocessing"] = dataset_preprocessing(cfg.data.dataset, cfg.data.size).to_dict()
    # checked as the loader checks it: nothing unreadable is written
    manifest = manifest_of(plain, f"of '{name}'")
    atomic_write_text(model_dir / MANIFEST, manifest.to_json(), error=FewshotError)
    return manifest.to_dict()


def full_protocol(cfg: TrainConfig, trained: int, preset_iterations: int | None,
                  notes: str) -> bool:
    """Whether the run is its preset's whole recipe: every setting as the preset has it (the device,
    precision and data root aside), all its iterations trained, and no protocol change noted."""
    if (cfg.preset not in PRESETS or preset_iterations is None or notes
        or trained < preset_iterations):
        return False
    ignored = ("device", "precision", "iterations", "preset", "seed", "checkpoint_every",
               "log_every", "eval_batch")
    ours, preset = cfg.to_dict(), get_preset(cfg.preset).to_dict()
    ours["data"]["root"] = preset["data"]["root"] = None
    return all(ours[k] == preset[k] for k in ours
               if k not in ignored) and cfg.iterations == preset_iterations


def unfinished_note(name: str, trained: int, run_iterations: int, preset_iterations: int | None,
                    forecast: dict | None) -> str:
    """The manifest's note on iterations: a run still under way (trained fewer than its own
    ``run_iterations``) says how many remain and what its curve forecasts; a run shortened below
    its preset says so; a finished run of its preset's length needs no note."""
    if trained < run_iterations:
        text = (f"Unfinished: {trained:,} of the run's {run_iterations:,} iterations trained "
                f"({run_iterations - trained:,} remain; `fewshot train --from-pretrained {name}` "
                "continues it); expect better numbers once it has finished.")
        if forecast is not None:
            metric = forecast["metric"]
            value = forecast[metric]
            def shown(v: float) -> str:
                return f"{100 * v:.1f}%" if metric == "accuracy" else f"{v:.3g}"
            text += (f" Its validation curve's power-law fit (iterations "
                     f"{forecast['fitted_iterations'][0]:,}-{forecast['fitted_iterations'][1]:,})"
                     f" forecasts {shown(value)} validation {metric} at iteration "
                     f"{run_iterations:,} (95% prediction interval {shown(forecast['low'])} to "
                     f"{shown(forecast['high'])}, from the curve's noise alone).")
        return text
    if preset_iterations is not None and trained < preset_iterations:
        return (f"Trained for {trained} iterations instead of the preset's {preset_iterations} "
                f"(reduced with --iterations/--set); expect lower numbers than the paper.")
    return ""


def validation_curve(metrics_path: Path, until: int) -> list[dict] | None:
    """The run's validation learning curve up to iteration ``until``: ``[{"iteration", <metric>,
    "ci95", "episodes"}]`` from its metrics log (None when the run left no log)."""
    if not metrics_path.exists():
        return None
    return [{k: v for k, v in r.items() if k != "kind"}
            for r in read_metrics(metrics_path, strict=False)
            if r.get("kind") == "val" and r.get("iteration", 0) <= until]


def bn_results(learner: GradientLearner, cfg: TrainConfig, report: dict, protocol: EpisodeProtocol,
               *, split: str | None, run: Execution) -> dict:
    """``transductive`` (batch statistics of each episode's query set: the papers' protocol) and
    ``non_transductive`` (stored statistics: a query's prediction does not depend on the other
    queries) results, each ``{"mean", "ci95", "bn_mode"}``, for models with batch norm; the one in
    the config's mode is ``report`` itself.  Both None for models without batch norm."""
    if report["bn_mode"] is None or not any(has_running_stats(m) for m in learner.modules()):
        return {"transductive": None, "non_transductive": None}
    out = {}
    for key, mode in (("transductive", "transductive"),
                      ("non_transductive",
                       "running" if report["bn_mode"] == "transductive" else report["bn_mode"])):
        r = report if mode == report["bn_mode"] else report_on_fixed_episodes(
            learner, cfg, replace(protocol, bn_mode=mode), split=split, run=run)
        out[key] = {"mean": r["mean"], "ci95": r["ci95"], "bn_mode": mode}
    return out


def _fmt(manifest: dict | None) -> str:
    if manifest is None:
        return "–"
    if manifest.get("metric", "accuracy") == "accuracy":
        return f"{100 * manifest['mean']:.2f} ± {100 * manifest['ci95']:.2f}"
    return f"MSE {manifest['mean']:.3f} ± {manifest['ci95']:.3f}"


def results_table(names: list[str] | None = None, *, full: bool = False,
                  manifests: str = "pretrained") -> str:
    """Markdown table of pretrained models: the split protocol their numbers are on (``vinyals`` or
    ``maml`` for Omniglot, docs/data.md), ours (mean ± 95% CI, as shipped) and, for models with
    batch norm, with batch statistics (transductive, the papers' protocol), next to the paper's
    number.

    Two forms, so the README stays a page: the slim one (``full=False``, the README's) adds only a
    link to each model's manifest, at ``{manifests}/NAME/manifest.json``; the full one
    (docs/results.md) adds the episodes, iterations, what differs from the preset, the training
    budget and the hardware."""
    names = names if names is not None else registry.list()
    if full:
        lines = [
            "| model | learner | split | ours (test, mean ± 95% CI) | ours, transductive BN | "
            "episodes "
            "| iterations (ours / preset) | full protocol | changes vs preset | training budget | "
            "hardware | paper |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    else:
        lines = [
            "| model | learner | split | ours (test, mean ± 95% CI) | ours, transductive BN | "
            "paper | manifest |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        try:
            manifest = registry.manifest(name)
        except CheckpointError:
            continue
        if manifest.kind != META_INITIALIZATION:
            continue  # learned optimizers have their own table (fewshot.l2o)
        m = manifest.to_dict()
        trans = m.get("transductive")
        if trans is None and ((m.get("config") or {}).get("learner")
                              or {}).get("bn_mode") == "transductive":
            # published before both numbers were recorded: its one number is the transductive one
            trans = m
        split = m.get("split_protocol") or "–"
        if not full:
            lines.append(f"| {name} | {m.get('learner')} | {split} | {_fmt(m)} | {_fmt(trans)} "
                         f"| {m.get('paper') or '–'} | "
                         f"[manifest]({manifests}/{name}/manifest.json) |")
            continue
        steps = f", {m['eval_steps']} steps" if m.get("eval_steps") else ""
        trained = m.get('trained_iterations', m.get('checkpoint_iteration'))
        its = f"{trained} / {m.get('preset_iterations') or '–'}"
        if m.get("remaining_iterations"):
            its += f" (unfinished: {m['remaining_iterations']} remain)"
        full_protocol = "–" if m.get("full_protocol") is None else ("yes" if m["full_protocol"]
                                                                    else "no")
        lines.append(
            f"| {name} | {m.get('learner')} | {split} | {_fmt(m)} | {_fmt(trans)} | "
            f"{m.get('episodes')} "
            f"({m.get('split')}{steps}) "
            f"| {its} | {full_protocol} | {m.get('protocol_changes') or '–'} | "
            f"{budget_text(m)} "
            f"| {(m.get('training_time') or {}).get('hardware') or m.get('hardware')} "
            f"| {m.get('paper') or '–'} |")
    return "\n".join(lines)


def budget_text(manifest: dict) -> str:
    """The results table's compute cell: the ``--budget`` text the model was published with and the
    clock its run recorded (wall and CPU minutes, threads); a run started from another model (e.g. a
    fine-tuning) recorded only its own time, which the text completes."""
    parts = [manifest["training_budget"]] if manifest.get("training_budget") else []
    t = manifest.get("training_time")
    if t:
        where = f"{t['processes']} processes x " if t.get("processes", 1) > 1 else ""
        parts.append(
            f"run clock: {t['wall_minutes']:g} wall-min, {t['cpu_minutes']:g} CPU-min ({where}"
            f"{t['threads']} thread{'s' if t['threads'] != 1 else ''}, "
            f"{t.get('device') or 'cpu'})")
    return "; ".join(parts) or "–"
