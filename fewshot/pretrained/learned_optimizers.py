"""Save and load learned optimizers: ``model.safetensors`` + ``manifest.json``, like pretrained
models.

A directory written here can be registered as a pretrained model (``fewshot.pretrained``); its
manifest has ``"kind": "learned-optimizer"``, the net's config and the weights' sha256.

Usage::

    save_learned_optimizer(net, "out/l2o-mnist", name="l2o-mnist", extra={"problem": "mnist"})
    net = load_learned_optimizer("l2o-mnist")          # a pretrained name, or a directory
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from episodes.files import atomic_write_bytes, atomic_write_text, sha256_file

from ..config.manifest import LEARNED_OPTIMIZER, MANIFEST, WEIGHTS, Manifest, manifest_of
from ..errors import CheckpointError, ConfigError, FewshotError
from ..l2o.net import CoordinateLSTM, LSTMOptimizerConfig
from . import registry

KIND = LEARNED_OPTIMIZER


def save_learned_optimizer(net: CoordinateLSTM, directory: str | os.PathLike, *, name: str,
                           extra: dict[str, Any] | None = None) -> dict:
    """Write ``directory/{model.safetensors,manifest.json}`` (atomically); returns the manifest's
    JSON object."""
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, st_save(tensors, metadata={"name": name, "kind": KIND}),
                       error=FewshotError)
    manifest = manifest_of({
        "name": name,
        "kind": KIND,
        "net": dataclasses.asdict(net.config),
        **(extra or {}),
        "weights": WEIGHTS,
        "sha256": sha256_file(directory / WEIGHTS),
    # checked as the loader checks it: nothing is written that cannot be read back
    }, f"of '{name}'")
    atomic_write_text(directory / MANIFEST, manifest.to_json(), error=FewshotError)
    return manifest.to_dict()


def _resolve(source: str | os.PathLike) -> Path:
    path = Path(source).expanduser()
    if (path / MANIFEST).is_file():
        return path
    if isinstance(source, str) and os.sep not in source and not path.exists():
        return registry.locate(source)
    raise CheckpointError(
        f"{path} is neither a pretrained learned-optimizer name nor a directory holding "
        f"{MANIFEST}: pass a name from `fewshot pretrained list` or a `fewshot "
        "l2o train "
        "--out` folder")


def verified_manifest(source: str | os.PathLike) -> tuple[Path, Manifest]:
    """(directory, manifest) of a learned optimizer, checking its kind and sha256
    (``pretrained.verify_dir``)."""
    directory = _resolve(source)
    manifest = registry.verify_dir(directory)
    if manifest.kind != KIND:
        raise CheckpointError(f"{directory} holds a {manifest.kind} model, not a learned "
                              "optimizer: load it with fewshot.pretrained.load")
    return directory, manifest


def load_with_manifest(source: str | os.PathLike) -> tuple[CoordinateLSTM, Manifest]:
    """(net, manifest) of the learned optimizer at ``source`` (pretrained name or directory),
    verified, eval mode."""
    directory, manifest = verified_manifest(source)
    try:
        config = LSTMOptimizerConfig(**(manifest.net or {}))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"learned optimizer manifest in {directory} has no valid 'net' config ({exc}): re-save "
            "it") from exc
    try:
        net = CoordinateLSTM(config)
    except ConfigError as exc:
        raise CheckpointError(f"learned optimizer manifest in {directory}: {exc}") from exc
    weights = directory / manifest.weights
    try:
        net.load_state_dict(load_file(str(weights)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"learned optimizer weights {weights} do not fit its manifest's net ({exc}): re-save "
            "it") from exc
    return net.eval(), manifest


def load_learned_optimizer(source: str | os.PathLike) -> CoordinateLSTM:
    """The ``CoordinateLSTM`` saved at ``source`` (pretrained name or directory), verified, in eval
    mode."""
    return load_with_manifest(source)[0]
