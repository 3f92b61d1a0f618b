"""Fault-tolerant training checkpoints: atomic, checksummed, safe to load, with every RNG state.

File layout: a plain ``torch.save`` of a dict of plain types and tensors, so that any PyTorch user
can open it with ``torch.load(path, weights_only=True)`` (which cannot execute code) and find e.g.
the learner's ``state_dict`` under ``"learner"``.  The dict's ``"sha256"`` entry is a digest of all
its other content (every key, value and tensor byte, in order), checked on load: PyTorch's zip
container does not verify its own CRCs, so without it a flipped bit in a tensor would load silently.
Truncation fails the zip reader; both become a clear CheckpointError.  Files of the first format (a
``FEWSHOT-CKPT-1`` header, the payload's sha256, then the payload) still load.

Usage::

    state = TrainingState(learner, opt, sched, sources={"train": sampler})
    save_checkpoint(run / "last.pt", state, iteration=it, config=cfg.to_dict(),
                    identity={"learner": "maml", "backbone": "conv4"})
    ckpt = load_checkpoint(run / "last.pt", expect={"learner": "maml", "backbone": "conv4"})
    restore_training_state(ckpt, state)
"""
from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from episodes.files import atomic_write_bytes

from ..errors import CheckpointError, FewshotError
from .rng import capture_rng, from_plain, restore_rng, to_plain

MAGIC = b"FEWSHOT-CKPT-1\n"  # the header of format-1 files (still read)
FORMAT_VERSION = 2
_ZIP = b"PK\x03\x04"  # how every torch.save file (zip container) starts
# Entries every checkpoint holds (save_checkpoint writes all of them) and the type each must have,
# so a
# file that passes its checksum but lacks one is a CheckpointError on load, never a KeyError later.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "iteration": int, "identity": dict, "config": dict, "learner": dict,
    "optimizer": (dict, type(None)),
    "scheduler": (dict, type(None)), "rng": dict, "sources": dict, "extra": dict,
}


@dataclass
class TrainingState:
    """The live objects a checkpoint saves and a resume restores: the learner, its meta-optimizer
    and learning-rate schedule (None: not part of this state) and the task sources by name, whose
    generators' positions make the resumed run draw the same tasks."""

    learner: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any | None = None
    sources: Mapping[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, state: TrainingState, *, iteration: int, config: dict,
                    identity: Mapping[str, str], extra: dict | None = None,
                    clock: dict | None = None,
                    hint: str = "choose a writable folder") -> Path:
    """Write ``state`` at ``iteration`` to ``path`` atomically (temp file + fsync + rename), with
    the run's ``config``, its ``identity`` (checked on load), ``extra`` values and every RNG state.

    ``clock``: the run's time so far (``fewshot.training.clock``); it is not training state, so
    resume does not restore it but adds to it.

    ``hint`` ends the one-line error of a failed write (the training loop says which checkpoint is
    kept).
    """
    learner, optimizer, scheduler = state.learner, state.optimizer, state.scheduler
    payload = {
        "format": FORMAT_VERSION,
        "iteration": int(iteration),
        "identity": dict(identity),
        "config": config,
        "learner": {k: v.detach().cpu().clone() for k, v in learner.state_dict().items()},
        "optimizer": _cpu(optimizer.state_dict()) if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng(),
        "sources": {name: to_plain(src.state_dict()) for name, src in state.sources.items()},
        "extra": extra or {},
    }
    if clock is not None:
        payload["clock"] = clock
    return atomic_write_bytes(path, encode_checkpoint(payload), error=FewshotError, hint=hint)


def encode_checkpoint(payload: dict) -> bytes:
    """The bytes of a checkpoint file holding ``payload`` (its ``sha256`` entry added)."""
    buf = io.BytesIO()
    torch.save({**payload, "sha256": content_digest(payload)}, buf)
    return buf.getvalue()


def content_digest(obj: Any) -> str:
    """sha256 hex of ``obj``'s content: dict keys and values in order, list/tuple items, scalars by
    type and ``repr``, tensors by dtype, shape and raw bytes.  The same before saving and after
    loading."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)};".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def load_checkpoint(path: str | Path, expect: Mapping[str, str] | None = None) -> dict:
    """Read and verify a checkpoint; ``expect`` checks the learner/backbone identity it was written
    by."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not exist: check the path or train first") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(
            f"{path} is a directory, not a checkpoint file: pass the .pt file or the run "
            "directory") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from exc
    if raw.startswith(MAGIC):
        ckpt = _load_format1(raw, path)
    elif raw.startswith(_ZIP[:len(raw)]) and raw:
        ckpt = _load_zip(raw, path)
    else:
        raise CheckpointError(
            f"{path} is not a fewshot checkpoint (not a torch.save file): it is corrupted or "
            "another kind of file")
    for key, kind in REQUIRED.items():
        if key not in ckpt:
            raise CheckpointError(
                f"checkpoint {path} has no '{key}' entry: it is incomplete or was not written by "
                "fewshot; resume from another checkpoint or start a new run")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise CheckpointError(
                f"checkpoint {path} entry '{key}' is a {type(ckpt[key]).__name__}, not what "
                "fewshot "
                "writes: it is damaged; resume from another checkpoint or start "
                "a new run")
    if expect:
        check_identity(ckpt, expect, path)
    return ckpt


def _unpickle(body: bytes, path: Path) -> Any:
    try:
        return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object: never executed
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}): "
                              "it holds unexpected objects or is damaged") from exc
    except Exception as exc:  # noqa: BLE001 - the zip reader's errors: truncated or damaged container
        raise CheckpointError(
            f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}): "
            "delete it and resume from another checkpoint") from exc


def _load_zip(raw: bytes, path: Path) -> dict:
    ckpt = _unpickle(raw, path)
    if not isinstance(ckpt,
                      dict) or ckpt.get("format") != FORMAT_VERSION or not isinstance(
                          ckpt.get("sha256"), str):
        raise CheckpointError(
            f"{path} is not a fewshot checkpoint (a torch.save file without fewshot's format and "
            "checksum entries): pass a last.pt/best.pt written by `fewshot train`")
    digest = ckpt.pop("sha256")
    if content_digest(ckpt) != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted (sha256 of its content mismatch): "
                              "delete it and resume from another checkpoint")
    return ckpt


def _load_format1(raw: bytes, path: Path) -> dict:
    head_end = len(MAGIC) + 64
    digest, body = raw[len(MAGIC):head_end], raw[head_end + 1:]
    if len(raw) < head_end + 1 or raw[head_end:head_end + 1] != b"\n":
        raise CheckpointError(
            f"checkpoint {path} is truncated: delete it and resume from another checkpoint")
    if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated (sha256 mismatch): "
                              "delete it and resume from another checkpoint")
    ckpt = _unpickle(body, path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise CheckpointError(
            f"checkpoint {path} has an unknown format: it was written by another version")
    return ckpt


def check_identity(ckpt: dict, expect: Mapping[str, str], path: str | Path = "checkpoint") -> None:
    """Raise CheckpointError if ``ckpt`` was written by another learner or backbone than
    ``expect``."""
    have = ckpt.get("identity", {})
    for key, want in expect.items():
        got = have.get(key)
        if got != want:
            raise CheckpointError(f"checkpoint {path} was written by {key} '{got}', not '{want}': "
                                  f"use a config with {key} '{got}' or another checkpoint")


def restore_training_state(ckpt: dict, state: TrainingState, *, rng: bool = True) -> int:
    """Load ``state``'s learner, optimizer, scheduler and task sources (those it has) and, with
    ``rng``, the global RNG states from ``ckpt``; returns its iteration."""
    learner, optimizer, scheduler = state.learner, state.optimizer, state.scheduler
    load_learner_state(learner, ckpt["learner"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"optimizer state does not match this learner ({exc}): "
                                  "the checkpoint is from another configuration") from exc
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    for name, src in state.sources.items():
        if name not in ckpt["sources"]:
            raise CheckpointError(
                f"checkpoint has no state for task source '{name}': it is from another kind of run")
        src.load_state_dict(from_plain(ckpt["sources"][name]))
    if rng:
        restore_rng(ckpt["rng"])
    return int(ckpt["iteration"])


def load_learner_state(learner: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """``learner.load_state_dict(state)`` with a CheckpointError (not a traceback) on any
    mismatch."""
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
