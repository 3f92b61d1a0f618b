"""Pretrained meta-initializations: a registry of ``<dir>/<name>/{manifest.json, model.safetensors}``.

Searched, in order: directories added with :func:`register_dir`, the ``os.pathsep``-separated
directories of ``$FEWSHOT_PRETRAINED_PATH``, then the ``pretrained/`` folder shipped with fewshot.
A directory is either one model (it holds ``manifest.json``) or a collection of model folders.
Weights are safetensors (no code runs on load) and verified against the manifest's sha256.

Usage::

    import fewshot.pretrained as pt
    pt.list()                                   # ['omniglot-5w1s-maml', 'sinusoid-maml', ...]
    pt.show("sinusoid-maml")["mean"]            # the manifest (measured accuracy/MSE, CI, ...)
    learner = pt.load("sinusoid-maml")          # a ready learner (eval mode, CPU)
    pt.register_dir("~/my-models")
"""
from __future__ import annotations

import builtins
import difflib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from episodes.files import sha256_file

from .config import TrainConfig, config_from_dict
from .errors import CheckpointError
from .training.build import build_learner_from_config, identity
from .training.checkpoint import load_learner_state

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
ENV_VAR = "FEWSHOT_PRETRAINED_PATH"
_REGISTERED: list[Path] = []


def package_dir() -> Path:
    """The ``pretrained/`` folder shipped with fewshot."""
    import pretrained  # the top-level data package (this module has the same name inside fewshot)

    return Path(pretrained.__file__).resolve().parent


def register_dir(path: str | os.PathLike) -> Path:
    """Add a directory of pretrained models (searched before the built-in ones)."""
    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise CheckpointError(f"pretrained directory {p} does not exist: create it or fix the path")
    if p not in _REGISTERED:
        _REGISTERED.insert(0, p)
    return p


def search_path() -> builtins.list[Path]:
    """Directories searched for models, first match wins."""
    dirs = builtins.list(_REGISTERED)
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()).expanduser())
    dirs.append(package_dir())
    return dirs


def _models() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in search_path():
        if not d.is_dir():
            continue
        candidates = [d] if (d / MANIFEST).is_file() else sorted(c for c in d.iterdir() if (c / MANIFEST).is_file())
        for c in candidates:
            name = read_manifest(c).get("name", c.name)
            found.setdefault(name, c)
    return found


def read_manifest(model_dir: Path) -> dict:
    """The parsed ``manifest.json`` of a model directory (CheckpointError if unreadable)."""
    path = model_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"pretrained manifest {path} is unreadable ({type(exc).__name__}): reinstall or "
                              "re-publish it") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"pretrained manifest {path} is not a JSON object: re-publish it")
    return data


def list() -> builtins.list[str]:  # noqa: A001 - public API name asked for: fewshot.pretrained.list()
    """Names of every pretrained model found on the search path, sorted."""
    return sorted(_models())


def locate(name: str) -> Path:
    """The directory of model ``name`` (CheckpointError with the available names if unknown)."""
    models = _models()
    if name not in models:
        close = difflib.get_close_matches(name, builtins.list(models), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"available: {', '.join(sorted(models)) or 'none'}"
        raise CheckpointError(f"unknown pretrained model '{name}': {hint} (see `fewshot pretrained list`)")
    return models[name]


def show(name: str) -> dict:
    """The manifest of model ``name``."""
    return read_manifest(locate(name))


def verify_dir(model_dir: Path, label: str | None = None) -> dict:
    """Check a model directory's weights file against its manifest's sha256; returns the manifest."""
    label = label or str(model_dir)
    manifest = read_manifest(model_dir)
    weights = model_dir / manifest.get("weights", WEIGHTS)
    if not weights.is_file():
        raise CheckpointError(f"pretrained model '{label}' has no weights file {weights}: reinstall or re-publish it")
    digest = sha256_file(weights, error=CheckpointError)
    if digest != manifest.get("sha256"):
        raise CheckpointError(f"pretrained weights {weights} fail the sha256 check ({digest[:12]}... != "
                              f"{str(manifest.get('sha256'))[:12]}...): the file is corrupted or was changed; "
                              "reinstall or re-publish it")
    return manifest


def verify(name: str) -> dict:
    """Check model ``name``'s weights file against the manifest's sha256; returns the manifest."""
    return verify_dir(locate(name), name)


def load_with_config(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, TrainConfig, dict]:
    """(learner, TrainConfig, manifest) of model ``name``; the weights are sha256-verified first."""
    manifest = verify(name)
    if manifest.get("kind", "meta-initialization") != "meta-initialization":
        raise CheckpointError(f"pretrained model '{name}' is a {manifest['kind']}, not a meta-initialization: "
                              "load it with fewshot.l2o.load_learned_optimizer or LearnedOptimizer(weights=...)")
    cfg = config_from_dict(manifest["config"], where=f"manifest of '{name}'")
    ident = identity(cfg)
    for key in ("learner", "backbone"):
        if manifest.get(key) != ident[key]:
            raise CheckpointError(f"pretrained model '{name}' manifest says {key} '{manifest.get(key)}' but its config "
                                  f"builds '{ident[key]}': re-publish it")
    learner = build_learner_from_config(cfg, "cpu")
    weights = locate(name) / manifest.get("weights", WEIGHTS)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"pretrained weights {weights} cannot be read ({exc}): reinstall or re-publish") from exc
    load_learner_state(learner, state)
    learner.to(device).eval()
    return learner, cfg, manifest


def load(name: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The pretrained learner ``name`` (sha256-verified, eval mode) on ``device``."""
    return load_with_config(name, device)[0]
