"""Fault-tolerant training checkpoints: atomic, checksummed, safe to load, with every RNG state.

File layout: ``FEWSHOT-CKPT-1\\n`` + sha256 hex of the payload + ``\\n`` + payload, where the payload
is a ``torch.save`` of plain types and tensors only (loaded with ``torch.load(weights_only=True)``,
which cannot execute code). The checksum turns truncation or bit rot into a clear CheckpointError.

Usage::

    save_checkpoint(run / "last.pt", learner=learner, optimizer=opt, scheduler=sched,
                    sources={"train": sampler}, iteration=it, config=cfg.to_dict(),
                    identity={"learner": "maml", "backbone": "conv4"})
    ckpt = load_checkpoint(run / "last.pt", expect={"learner": "maml", "backbone": "conv4"})
    restore_training_state(ckpt, learner=learner, optimizer=opt, scheduler=sched, sources={"train": sampler})
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, Mapping

import torch

from episodes.files import atomic_write_bytes

from ..errors import CheckpointError, FewshotError
from .rng import capture_rng, from_plain, restore_rng, to_plain

MAGIC = b"FEWSHOT-CKPT-1\n"
FORMAT_VERSION = 1
# Entries every checkpoint holds (save_checkpoint writes all of them) and the type each must have, so a
# file that passes its checksum but lacks one is a CheckpointError on load, never a KeyError later.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "iteration": int, "identity": dict, "config": dict, "learner": dict, "optimizer": (dict, type(None)),
    "scheduler": (dict, type(None)), "rng": dict, "sources": dict, "extra": dict,
}


def save_checkpoint(path: str | Path, *, learner: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any | None, sources: Mapping[str, Any], iteration: int, config: dict,
                    identity: Mapping[str, str], extra: dict | None = None,
                    hint: str = "choose a writable folder") -> Path:
    """Write a complete training state to ``path`` atomically (temp file + fsync + rename).

    ``hint`` ends the one-line error of a failed write (the training loop says which checkpoint is kept).
    """
    payload = {
        "format": FORMAT_VERSION,
        "iteration": int(iteration),
        "identity": dict(identity),
        "config": config,
        "learner": {k: v.detach().cpu().clone() for k, v in learner.state_dict().items()},
        "optimizer": _cpu(optimizer.state_dict()) if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng(),
        "sources": {name: to_plain(src.state_dict()) for name, src in sources.items()},
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode("ascii")
    return atomic_write_bytes(path, MAGIC + digest + b"\n" + body, error=FewshotError, hint=hint)


def load_checkpoint(path: str | Path, expect: Mapping[str, str] | None = None) -> dict:
    """Read and verify a checkpoint; ``expect`` checks the learner/backbone identity it was written by."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist: check the path or train first") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file: pass the .pt file or the run "
                              "directory") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from exc
    if not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a fewshot checkpoint (bad header): it is corrupted or another kind of "
                              "file")
    head_end = len(MAGIC) + 64
    digest, body = raw[len(MAGIC):head_end], raw[head_end + 1:]
    if len(raw) < head_end + 1 or raw[head_end:head_end + 1] != b"\n":
        raise CheckpointError(f"checkpoint {path} is truncated: delete it and resume from another checkpoint")
    if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated (sha256 mismatch): "
                              "delete it and resume from another checkpoint")
    try:
        ckpt = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}): "
                              "it holds unexpected objects or is damaged") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has an unknown format: it was written by another version")
    for key, kind in REQUIRED.items():
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} has no '{key}' entry: it is incomplete or was not written by "
                                  "fewshot; resume from another checkpoint or start a new run")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise CheckpointError(f"checkpoint {path} entry '{key}' is a {type(ckpt[key]).__name__}, not what fewshot "
                                  "writes: it is damaged; resume from another checkpoint or start a new run")
    if expect:
        check_identity(ckpt, expect, path)
    return ckpt


def check_identity(ckpt: dict, expect: Mapping[str, str], path: str | Path = "checkpoint") -> None:
    """Raise CheckpointError if ``ckpt`` was written by another learner or backbone than ``expect``."""
    have = ckpt.get("identity", {})
    for key, want in expect.items():
        got = have.get(key)
        if got != want:
            raise CheckpointError(f"checkpoint {path} was written by {key} '{got}', not '{want}': "
                                  f"use a config with {key} '{got}' or another checkpoint")


def restore_training_state(ckpt: dict, *, learner: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                           scheduler: Any | None = None, sources: Mapping[str, Any] | None = None,
                           rng: bool = True) -> int:
    """Load learner/optimizer/scheduler/task-source/RNG states from ``ckpt``; returns its iteration."""
    load_learner_state(learner, ckpt["learner"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"optimizer state does not match this learner ({exc}): "
                                  "the checkpoint is from another configuration") from exc
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    for name, src in (sources or {}).items():
        if name not in ckpt["sources"]:
            raise CheckpointError(f"checkpoint has no state for task source '{name}': it is from another kind of run")
        src.load_state_dict(from_plain(ckpt["sources"][name]))
    if rng:
        restore_rng(ckpt["rng"])
    return int(ckpt["iteration"])


def load_learner_state(learner: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """``learner.load_state_dict(state)`` with a CheckpointError (not a traceback) on any mismatch."""
    try:
        learner.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise CheckpointError(f"weights do not fit this learner/backbone ({detail}): "
                              "use the config the checkpoint was trained with") from exc


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj
