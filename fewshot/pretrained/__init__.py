"""Pretrained meta-initializations and learned optimizers: find, verify, load, continue training.

``registry`` finds and loads models (safetensors weights checked against their manifest);
``training_state`` is the run state a model ships so that ``fewshot train --from-pretrained``
continues it.

Usage::

    import fewshot.pretrained as pt
    pt.list()                                   # ['omniglot-5w1s-maml', 'sinusoid-maml', ...]
    pt.show("sinusoid-maml")["mean"]            # the manifest (measured accuracy/MSE, CI, ...)
    learner = pt.load("sinusoid-maml")          # a ready learner (eval mode, CPU)
    # episodes.Preprocessing: your images as it saw its own
    prep = pt.preprocessing("omniglot-5w1s-maml")
    learner20 = pt.load("omniglot-5w1s-maml", ways=20)   # same init, a zero 20-way head
    pt.register_dir("~/my-models")
"""
from __future__ import annotations

from .distilled import distilled_table, load_distilled, publish_distilled
from .learned_optimizers import load_learned_optimizer, save_learned_optimizer
from .registry import (
    ENV_VAR,
    ManifestWarning,
    known,
    list,
    load,
    load_with_config,
    locate,
    manifest,
    package_dir,
    preprocessing,
    preprocessing_of,
    register_dir,
    search_path,
    show,
    verify,
    verify_dir,
)
from .training_state import (
    BEST_STATE,
    METRICS,
    STATE,
    continue_from_pretrained,
    no_state_message,
    read_training_state,
    write_training_state,
)

__all__ = ["BEST_STATE", "ENV_VAR", "METRICS", "STATE", "ManifestWarning",
           "continue_from_pretrained", "distilled_table", "known", "list", "load", "load_distilled",
           "load_learned_optimizer", "save_learned_optimizer",
           "load_with_config", "locate", "manifest", "no_state_message", "package_dir",
           "preprocessing", "preprocessing_of", "publish_distilled", "read_training_state",
           "register_dir", "search_path", "show", "verify", "verify_dir", "write_training_state"]
