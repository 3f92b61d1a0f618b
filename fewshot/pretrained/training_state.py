"""The training state a pretrained model ships, so that its run can be continued exactly where it
stopped.

``fewshot pretrained publish RUN NAME`` writes, beside ``model.safetensors``:

- ``state.pt``: the run's ``last.pt`` (learner, Adam moments, scheduler, task-source generator,
  global RNG, iteration, extra, run clock, config), i.e. where the run stopped;
- ``best-state.pt``: the run's ``best.pt``, only when its iteration differs from ``last.pt``'s (its
  learner is then the published weights; otherwise ``state.pt``'s learner is);
- ``metrics.jsonl``: the run's metrics log up to where it stopped.

All are the checkpoint format of ``fewshot.training.checkpoint`` (``torch.load(weights_only=True)``:
nothing loaded runs code; every entry covered by its content digest), with the config made portable
(``data.root`` None, ``device`` auto), and checksummed in the manifest's ``training_state`` like the
weights.

Why ``last.pt`` and not the published ``best.pt``: continuing "where the run stopped" means
continuing the run an uninterrupted training would have continued, which is the last state.
Resuming from ``best.pt`` would only recompute the iterations between best and last
(bit-identically, so nothing new).  ``best.pt`` is shipped when it differs so that the continued run
folder is the original one: the best weights stay the published ones until a later validation beats
them.

``fewshot train --from-pretrained NAME`` (:func:`continue_from_pretrained`) seeds a new run folder
with these files and resumes it; on the same device the result is bit-identical to the uninterrupted
run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from episodes.files import atomic_write_bytes, sha256_file

from ..config import apply_overrides, config_from_dict, save_config
from ..config.manifest import META_INITIALIZATION, Manifest
from ..errors import CheckpointError, ConfigError, FewshotError
from ..runtime import distributed
from ..training.build import load_data_split, resolve_device
from ..training.checkpoint import encode_checkpoint, load_checkpoint
from ..training.loop import train
from ..training.metrics_log import read_metrics
from ..training.run_folder import (
    BEST,
    CONFIG_FILE,
    LAST,
    METRICS_FILE,
    RunLock,
    check_writable,
    config_diff,
)
from .registry import locate, verify

STATE = "state.pt"
BEST_STATE = "best-state.pt"
METRICS = METRICS_FILE
FORMAT = 1
# config keys a continued run may change: where the data lives and which device trains are the
# user's
CONTINUABLE_CHANGES = {"iterations", "device", "data.root"}


def portable_config(config: dict) -> dict:
    """A run's config without what belongs to the machine it ran on (data root, device)."""
    return {**config, "data": {**config.get("data", {}), "root": None}, "device": "auto"}


def _portable_bytes(ckpt: dict) -> bytes:
    return encode_checkpoint({**ckpt, "config": portable_config(ckpt["config"])})


def _entry(model_dir: Path, name: str, iteration: int) -> dict:
    return {"file": name, "sha256": sha256_file(model_dir / name, error=FewshotError),
            "iteration": iteration}


def write_training_state(model_dir: Path, *, last_path: Path, best_path: Path,
                         metrics_path: Path) -> dict:
    """Write ``state.pt`` (from ``last_path``), ``best-state.pt`` (from ``best_path``, when its
    iteration differs) and ``metrics.jsonl`` into ``model_dir``; returns the manifest's
    ``training_state`` entry."""
    last = load_checkpoint(last_path)
    best = load_checkpoint(best_path) if best_path != last_path else last
    it_last, it_best = int(last["iteration"]), int(best["iteration"])
    atomic_write_bytes(model_dir / STATE, _portable_bytes(last), error=FewshotError)
    entry: dict[str, Any] = {"format": FORMAT, "last": _entry(model_dir, STATE, it_last)}
    if it_best != it_last:
        atomic_write_bytes(model_dir / BEST_STATE, _portable_bytes(best), error=FewshotError)
        entry["best"] = _entry(model_dir, BEST_STATE, it_best)
    else:
        # one file: the published weights are where the run stopped
        entry["best"] = dict(entry["last"])
        (model_dir / BEST_STATE).unlink(missing_ok=True)  # from an earlier publish of the same name
    rows = [r for r in read_metrics(metrics_path, strict=False) if r.get("iteration", 0)
            <= it_last] \
        if metrics_path.exists() else []
    if rows:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(model_dir / METRICS, text.encode("utf-8"), error=FewshotError)
        entry["metrics"] = {"file": METRICS,
                            "sha256": sha256_file(model_dir / METRICS, error=FewshotError)}
    else:
        entry["metrics"] = None
        (model_dir / METRICS).unlink(missing_ok=True)
    return entry


def no_state_message(label: str, manifest: Manifest) -> str:
    why = (manifest.training_state_note
           or "it was published before models carried their training state")
    return (
        f"pretrained model '{label}' ships no training state ({why}): it cannot be continued; use "
        f"`fewshot pretrained calibrate {label} --out DIR` to start a new run from its weights")


def _checked(model_dir: Path, label: str, item: Any, what: str) -> Path:
    if not isinstance(item, dict) or not isinstance(item.get("file"),
                                                    str) or not isinstance(item.get("sha256"),
                                                                           str) \
            or Path(item["file"]).name != item["file"]:
        raise CheckpointError(
            f"pretrained manifest of '{label}': training_state.{what} is malformed: re-publish it")
    path = model_dir / item["file"]
    if not path.is_file():
        raise CheckpointError(
            f"pretrained model '{label}' lacks its training state file {path}: reinstall or "
            "re-publish it")
    digest = sha256_file(path, error=CheckpointError)
    if digest != item["sha256"]:
        raise CheckpointError(
            f"pretrained training state {path} fails the sha256 check ({digest[:12]}... != "
            f"{item['sha256'][:12]}...): the file is corrupted or was changed; "
            "reinstall or "
            "re-publish it")
    return path


def _same_run(a: dict, b: dict) -> list[str]:
    """What differs between two runs' configs, each read as this version reads it (a field added
    since a run was written takes its default there, as when the run is resumed)."""
    a, b = (config_from_dict(c, where="shipped training state config").to_dict() for c in (a, b))
    return [d for d in config_diff(portable_config(a), portable_config(b))
            if d.split(":")[0] not in CONTINUABLE_CHANGES]


def read_training_state(model_dir: Path, manifest: Manifest, label: str) -> tuple[dict, dict,
                                                                                  dict[str, Path]]:
    """Verify a model's shipped training state against its manifest and weights: (last checkpoint,
    best checkpoint, {run file name: shipped file}).  CheckpointError when it is missing, corrupted,
    or not the state of these weights (identity, config, or the learner of the published checkpoint,
    last or best, != the published weights)."""
    ts = manifest.training_state
    if not ts:
        raise CheckpointError(no_state_message(label, manifest))
    if not isinstance(ts, dict) or ts.get("format") != FORMAT:
        raise CheckpointError(
            f"pretrained manifest of '{label}': training_state has an unknown format: "
            "re-publish it with this version of fewshot")
    expect = {"learner": str(manifest.learner), "backbone": str(manifest.backbone)}
    last_path = _checked(model_dir, label, ts.get("last"), "last")
    best_path = _checked(model_dir, label, ts.get("best"), "best")
    last = load_checkpoint(last_path, expect=expect)
    best = last if best_path == last_path else load_checkpoint(best_path, expect=expect)
    for ckpt, item, what in ((last, ts["last"], "last"), (best, ts["best"], "best")):
        if int(ckpt["iteration"]) != item.get("iteration"):
            raise CheckpointError(
                f"pretrained training state of '{label}' ({what}) is at iteration "
                f"{ckpt['iteration']}, the manifest says "
                f"{item.get('iteration')}: re-publish it")
    diffs = _same_run(manifest.config or {}, last["config"]) + _same_run(last["config"],
                                                                         best["config"])
    if diffs:
        raise CheckpointError(
            f"pretrained training state of '{label}' is from another run than its weights "
            f"({'; '.join(diffs[:3])}): re-publish it")
    weights_path = model_dir / manifest.weights
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"pretrained weights {weights_path} cannot be read ({exc}): reinstall or re-publish") \
            from exc
    # the published weights are the run's last state or its best validated one (manifest.selection
    # says which)
    published, published_path = ((last, last_path) if manifest.checkpoint_iteration
                                 == int(last["iteration"])
                                 else (best, best_path))
    state = published["learner"]
    if set(weights) != set(state) or any(not torch.equal(weights[k], state[k]) for k in weights):
        raise CheckpointError(
            f"pretrained training state of '{label}' does not match its weights (the learner of "
            f"{published_path.name} differs from {weights_path.name}): "
            "re-publish it")
    files = {LAST: last_path, BEST: best_path}
    if ts.get("metrics"):
        files[METRICS] = _checked(model_dir, label, ts["metrics"], "metrics")
    return last, best, files


def continue_from_pretrained(name: str, out: str | Path | None = None,
                             overrides: list[str] | None = None, *,
                             quiet: bool = False, tensorboard: bool = True, **train_kw: Any):
    """Continue model ``name``'s training run where it stopped, in run folder ``out`` (default
    ``runs/NAME``): the folder is seeded with the shipped ``last.pt``/``best.pt``/``metrics.jsonl``
    and resumed.  ``overrides`` (``--set``-style) may change only ``iterations`` (extend the cosine
    schedule, see ``fit_schedule``), ``device`` and ``data.root``.  A folder that already holds a
    run is resumed as it is (as ``fewshot train --out`` does), after the same config check.  Returns
    the TrainResult."""
    manifest = verify(name)
    if manifest.kind != META_INITIALIZATION:
        raise ConfigError(
            f"pretrained model '{name}' is a {manifest.kind}, not a meta-initialization trained by "
            "`fewshot train`: there is no training run to continue")
    model_dir = locate(name)
    last, _, files = read_training_state(model_dir, manifest, name)
    base = config_from_dict(last["config"], where=f"training state of '{name}'")
    cfg = apply_overrides(base, list(overrides or []))
    changed = _same_run(base.to_dict(), cfg.to_dict())
    if changed:
        raise ConfigError(
            f"--from-pretrained continues the shipped run unchanged, but the options change "
            f"{'; '.join(changed[:3])}: only --iterations, --device and data.root "
            "may differ "
            f"(to train differently, use `fewshot pretrained calibrate {name} --out "
            "DIR`)")
    if cfg.iterations < int(last["iteration"]):
        raise ConfigError(
            f"'{name}' stopped at iteration {last['iteration']} > iterations={cfg.iterations}: "
            "raise --iterations to continue")
    # refused before anything is written: --device cuda without a GPU, ...
    resolve_device(cfg.device)
    if not cfg.data.is_regression:
        # ... or no data where data.root / $FEWSHOT_DATA says
        load_data_split(cfg, cfg.data.train_split)
    out = Path(out) if out is not None else Path("runs") / name
    # under torchrun rank 0 alone writes
    if distributed.is_main_process() and not (out / LAST).exists():
        check_writable(out)
        # last.pt last: a seeding cut short leaves no last.pt, so the next call seeds again
        with RunLock(out):
            save_config(cfg, out / CONFIG_FILE)
            for run_name in sorted(files, key=lambda n: n == LAST):
                atomic_write_bytes(out / run_name, files[run_name].read_bytes(), error=FewshotError,
                                   hint="choose another --out")
    return train(cfg, out, resume=True, quiet=quiet, tensorboard=tensorboard, **train_kw)
