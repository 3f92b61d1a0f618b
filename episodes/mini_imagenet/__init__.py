"""mini-ImageNet (Vinyals et al.; Ravi & Larochelle split: 64/16/20 classes x 600 images, 84x84
RGB).

Reads every common distribution format and converts it once into the canonical HDF5 store
``<root>/mini-imagenet/mini-imagenet-<size>.h5`` (parts ``train``/``val``/``test``, uint8
``[M, 3, S, S]``, classes = wnids, sorted). One module per job:

* ``detect``: which format a ``--source`` holds (see ``FORMATS``);
* ``ravi`` (1: ``images/`` + CSVs, or ``{train,val,test}/<wnid>/``), ``cache_pickle`` (2:
  learn2learn / Ren et al.), ``metaopt_pickle`` (3: MetaOptNet), ``torchmeta_h5`` (4), ``ilsvrc``
  (5: builder from ILSVRC-2012 + the Ravi CSVs);
* ``build``: checks against the Ravi split and writes/loads the store; ``common``: shared pieces.

Pickles are read with :mod:`episodes.safe_pickle` (data only, never code).

Usage::

    prepare_mini_imagenet("/data/mini-imagenet", root="/tmp/fewshot")   # format auto-detected
    split = load_mini_imagenet("val", root="/tmp/fewshot")  # 16 classes x 600, [9600, 3, 84, 84]
"""
from .build import (
    check_source,
    default_workers,
    load_mini_imagenet,
    prepare_mini_imagenet,
    read_source,
)
from .common import (
    DEFAULT_SIZE,
    EXPECTED_COUNTS,
    MD5,
    NAME,
    RAVI_CLASSES,
    SPLITS,
    SourceData,
    decode_image,
    decode_jpeg,
    preprocessing,
    read_split_csv,
)
from .detect import FORMATS, detect_format

__all__ = [
    "DEFAULT_SIZE", "EXPECTED_COUNTS", "FORMATS", "MD5", "NAME", "RAVI_CLASSES", "SPLITS",
    "SourceData",
    "check_source", "decode_image", "decode_jpeg", "default_workers", "detect_format",
    "load_mini_imagenet",
    "prepare_mini_imagenet", "preprocessing", "read_source", "read_split_csv",
]
