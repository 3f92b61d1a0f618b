"""The registry of pretrained models: ``<dir>/<name>/{manifest.json, model.safetensors}`` folders.

Searched, in order: directories added with :func:`register_dir`, the ``os.pathsep``-separated
directories of ``$FEWSHOT_PRETRAINED_PATH``, then the ``pretrained/`` folder shipped with fewshot.
A directory is either one model (it holds ``manifest.json``) or a collection of model folders.
Weights are safetensors (no code runs on load) and verified against the manifest's sha256.
Usage: the package docstring (``fewshot.pretrained``).
"""
from __future__ import annotations

import builtins
import difflib
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from episodes import DataError, Preprocessing, dataset_preprocessing
from episodes.files import sha256_file

from ..config import TrainConfig, apply_overrides, config_from_dict
from ..config.manifest import (
    LEARNED_OPTIMIZER,
    MANIFEST,
    META_INITIALIZATION,
    Manifest,
    read_manifest,
)
from ..errors import CheckpointError, FewshotWarning
from ..learners import GradientLearner
from ..training.build import build_learner_from_config, run_identity
from ..training.checkpoint import load_learner_state
from ..training.ways import with_ways

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


class ManifestWarning(FewshotWarning):
    """A model folder on the search path was skipped because its manifest is broken."""


# warn once per broken manifest and process, however often the path is scanned
_WARNED: set[str] = set()


def _scan() -> dict[str, Path | CheckpointError]:
    """Every model on the search path by name, first match wins; a broken manifest is kept as its
    error.

    Why keep the error: one broken folder must not stop the use of an unrelated good model (it is
    skipped with a :class:`ManifestWarning` naming the file), but asking for the broken one by its
    folder name must still say what is wrong with it.
    """
    found: dict[str, Path | CheckpointError] = {}
    for d in search_path():
        if not d.is_dir():
            continue
        try:
            candidates = [d] if (d / MANIFEST).is_file() else sorted(c for c in d.iterdir()
                                                                     if (c / MANIFEST).is_file())
        except OSError:
            continue  # an unreadable directory holds no model we could load
        for c in candidates:
            try:
                name = read_manifest(c).name or c.name
            except CheckpointError as exc:
                found.setdefault(c.name, exc)
                if str(c) not in _WARNED:
                    _WARNED.add(str(c))
                    warnings.warn(f"skipping the pretrained model in {c}: {exc}", ManifestWarning,
                                  stacklevel=3)
                continue
            found.setdefault(name, c)
    return found


def _models() -> dict[str, Path]:
    return {name: where for name, where in _scan().items() if isinstance(where, Path)}


def known(name: str) -> bool:
    """Whether the search path has a model folder of that name, readable or not (``locate`` says
    which)."""
    return name in _scan()


def list() -> builtins.list[
    str]:  # noqa: A001 - public API name asked for: fewshot.pretrained.list()
    """Names of every pretrained model found on the search path, sorted."""
    return sorted(_models())


def locate(name: str) -> Path:
    """The directory of model ``name`` (CheckpointError with the available names if unknown)."""
    scanned = _scan()
    where = scanned.get(name)
    if isinstance(where, CheckpointError):
        raise where
    if where is None:
        models = _models()
        close = difflib.get_close_matches(name, builtins.list(models), n=1)
        hint = (f"did you mean '{close[0]}'?" if close
                else f"available: {', '.join(sorted(models)) or 'none'}")
        raise CheckpointError(
            f"unknown pretrained model '{name}': {hint} (see `fewshot pretrained list`)")
    return where


def manifest(name: str) -> Manifest:
    """The manifest of model ``name`` (typed; unchecked weights: see :func:`verify`)."""
    return read_manifest(locate(name))


def show(name: str) -> dict:
    """The manifest of model ``name``, as its JSON object."""
    return manifest(name).to_dict()


def verify_dir(model_dir: Path, label: str | None = None) -> Manifest:
    """Check a model directory's weights file against its manifest's sha256; returns the
    manifest."""
    label = label or str(model_dir)
    manifest = read_manifest(model_dir)
    weights = model_dir / manifest.weights
    if not weights.is_file():
        raise CheckpointError(
            f"pretrained model '{label}' has no weights file {weights}: reinstall or re-publish it")
    digest = sha256_file(weights, error=CheckpointError)
    if digest != manifest.sha256:
        raise CheckpointError(
            f"pretrained weights {weights} fail the sha256 check ({digest[:12]}... != "
            f"{str(manifest.sha256)[:12]}...): the file is corrupted or was "
            "changed; "
            "reinstall or re-publish it")
    return manifest


def verify(name: str) -> Manifest:
    """Check model ``name``'s weights file against the manifest's sha256; returns the manifest."""
    return verify_dir(locate(name), name)


def preprocessing_of(manifest: Manifest, cfg: TrainConfig | None = None) -> Preprocessing | None:
    """The ``episodes.Preprocessing`` a manifest records, else its dataset's store preprocessing
    (older manifests); ``None`` for models that take no images (sinusoid regression)."""
    label = manifest.name or "?"
    if manifest.preprocessing is not None:
        try:
            return Preprocessing.from_dict(manifest.preprocessing,
                                           where=f"manifest of '{label}': preprocessing")
        except DataError as exc:
            raise CheckpointError(f"{exc}: re-publish the model") from None
    cfg = cfg or config_from_dict(manifest.config or {}, where=f"manifest of '{label}'")
    if cfg.data.is_regression:
        return None
    return dataset_preprocessing(cfg.data.dataset, cfg.data.size)


def preprocessing(name: str) -> Preprocessing:
    """How model ``name``'s training images were prepared, as a transform for yours.

    Usage: ``prep = preprocessing("omniglot-5w1s-maml"); x = prep("a.png")`` (float32 ``[1, 28,
    28]``) or ``prep.folder("my_chars/")`` (a ClassSplit).
    """
    prep = preprocessing_of(manifest(name))
    if prep is None:
        raise CheckpointError(
            f"pretrained model '{name}' takes no images (it is a regression model): "
            "preprocessing applies to image classifiers")
    return prep


def load_with_config(name: str, device: str | torch.device = "cpu", *,
                     ways: int | None = None) -> tuple[GradientLearner, TrainConfig, Manifest]:
    """(learner, TrainConfig, manifest) of model ``name``; the weights are sha256-verified first.

    The learner's default test-time steps are the manifest's ``test_steps`` (chosen on the
    validation set when the model was published) when it records them; ``ways`` gives it a zero
    ``ways``-way head (``fewshot.training.ways.with_ways``). ``learner.preprocessing`` is its
    ``episodes.Preprocessing`` (``None`` for regression models).
    """
    manifest = verify(name)
    if manifest.kind != META_INITIALIZATION:
        how = ("fewshot.pretrained.load_learned_optimizer"
               if manifest.kind == LEARNED_OPTIMIZER else "fewshot.pretrained.load_distilled")
        raise CheckpointError(
            f"pretrained model '{name}' is a {manifest.kind}, not a meta-initialization: load it "
            f"with {how}")
    cfg = config_from_dict(manifest.config or {}, where=f"manifest of '{name}'")
    ident = run_identity(cfg)
    for key in ("learner", "backbone"):
        if getattr(manifest, key) != ident[key]:
            raise CheckpointError(
                f"pretrained model '{name}' manifest says {key} '{manifest.get(key)}' but its "
                "config "
                f"builds '{ident[key]}': re-publish it")
    test_steps = manifest.test_steps
    # as trained (per-step BN has its trained slot count)
    learner = build_learner_from_config(cfg, "cpu")
    weights = locate(name) / manifest.weights
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"pretrained weights {weights} cannot be read ({exc}): reinstall or "
            "re-publish") from exc
    load_learner_state(learner, state)
    if ways is not None:
        learner, cfg = with_ways(learner, cfg, ways)
    # the default steps only: steps past the last per-step BN slot use that slot
    if test_steps is not None:
        lc = learner.config
        changes = [f"learner.eval_steps={test_steps}"]
        # keep the trained count
        if getattr(lc, "per_step_bn", False) and getattr(lc, "bn_slots", None) is None:
            changes.append(f"learner.bn_slots={max(lc.inner_steps, lc.eval_steps or 0) + 1}")
        cfg = apply_overrides(cfg, changes)
        learner.config = cfg.learner.config
    # a plain attribute (not state): nn.Module's __setattr__ is typed for tensors and modules only
    learner.preprocessing = preprocessing_of(manifest, cfg)
    learner.to(device).eval()
    return learner, cfg, manifest


def load(name: str, device: str | torch.device = "cpu", *,
         ways: int | None = None) -> GradientLearner:
    """The pretrained learner ``name`` (sha256-verified, eval mode) on ``device``.

    ``ways``: an N-way head instead of the trained one (zero-initialised, so every class starts
    equal; see ``fewshot.training.ways``). ``learner.preprocessing`` turns your images into its
    inputs. Usage: ``learner = load("omniglot-5w1s-maml", ways=20)``.
    """
    return load_with_config(name, device, ways=ways)[0]
