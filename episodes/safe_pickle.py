"""A restricted unpickler for data-only pickles (NumPy arrays inside dicts/lists of strings and
numbers).

Plain ``pickle.load`` runs whatever a file names (``os.system``, ``builtins.eval``, ...): a
downloaded pickle can execute code. :func:`load_data_pickle` resolves only the globals that NumPy's
own array pickles need and refuses every other one with a :class:`DataError` naming it, before it is
called. Dicts, lists, tuples, strings, bytes, ints, floats, bools and ``None`` need no global at
all.

Allowed globals (both the NumPy 1.x ``numpy.core`` and 2.x ``numpy._core`` spellings):

* ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``: how every array
  pickles;
* ``numpy.core.multiarray.scalar``: NumPy scalars (e.g. an ``np.int64`` label);
* ``numpy.core.numeric._frombuffer``: arrays pickled with protocol 5;
* ``_codecs.encode`` and ``bytes`` (``builtins``/``__builtin__``): how Python 3 writes ``bytes``
  (the array buffer; ``bytes()`` when empty) at protocols 0-2.

Python 2 pickles (MetaOptNet's) need ``encoding="latin1"``: their byte strings are then read as
``str`` code points 0-255, which NumPy turns back into the exact array bytes.

Usage::

    blob = load_data_pickle("mini-imagenet-cache-train.pkl")  # {'image_data': ..., ...}
    blob = load_data_pickle("miniImageNet_category_split_val.pickle", encoding="latin1")
"""
from __future__ import annotations

import _codecs
import importlib
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError


def _numpy_internals() -> dict[str, Any]:
    """NumPy's private array-pickling helpers, from ``numpy._core`` (2.x) or ``numpy.core`` (1.x).

    Imported by name (``importlib``), so the type checker sees a module either way and the code
    checks the same under NumPy 1.x and 2.x stubs (1.26 ships a partial ``numpy._core`` without
    ``numeric``)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core under NumPy 2
                multiarray = importlib.import_module(f"{package}.multiarray")
                numeric = importlib.import_module(f"{package}.numeric")
        except ImportError:  # pragma: no cover - the other NumPy major version
            continue
        return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar,
                "_frombuffer": numeric._frombuffer}
    # pragma: no cover
    raise ImportError("NumPy has neither numpy._core nor numpy.core: install numpy 1.x or 2.x")


_NP = _numpy_internals()
ALLOWED: dict[tuple[str, str], Any] = {("_codecs", "encode"): _codecs.encode,
                                       ("builtins", "bytes"): bytes,
                                       ("__builtin__", "bytes"): bytes}
for _prefix in ("numpy.core", "numpy._core"):
    ALLOWED[(f"{_prefix}.multiarray", "_reconstruct")] = _NP["_reconstruct"]
    ALLOWED[(f"{_prefix}.multiarray", "scalar")] = _NP["scalar"]
    ALLOWED[(f"{_prefix}.numeric", "_frombuffer")] = _NP["_frombuffer"]
ALLOWED[("numpy", "ndarray")] = np.ndarray
ALLOWED[("numpy", "dtype")] = np.dtype


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` returns only :data:`ALLOWED` globals.

    Usage: ``RestrictedUnpickler(f, encoding="latin1").load()``.
    """

    what = "pickle"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.what} refers to '{module}.{name}', which a data-only pickle never needs "
                "(it could run code): "
                "refusing to load it; get the file from a trusted source"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(
            f"{self.what} uses persistent ids, which data-only pickles never do: refusing to load "
            "it; "
            "get the file from a trusted source")


def load_data_pickle(path: str | os.PathLike, *, encoding: str = "ASCII") -> Any:
    """Read a pickle of arrays/dicts/lists/strings/numbers; any other global raises
    :class:`DataError`.

    ``encoding="latin1"`` reads Python 2 pickles. Usage:
    ``load_data_pickle("x.pkl")["image_data"].shape``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    unpickler = RestrictedUnpickler(io.BytesIO(data), encoding=encoding)
    unpickler.what = str(path)
    try:
        return unpickler.load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError,
            UnicodeDecodeError, MemoryError) as exc:
        raise DataError(
            f"{path} is not a readable pickle ({type(exc).__name__}: {exc}); the file is corrupt: "
            "replace "
            "it") from exc
