"""fewshot.learners.config: ``LearnerConfig`` refuses bad switches in one line, and every import path names it."""
import re

import pytest

from fewshot.errors import ConfigError
from fewshot.learners import LearnerConfig, MAMLConfig


@pytest.mark.parametrize("kwargs, message", [
    (dict(inner_steps=0), "inner_steps must be >= 1, got 0: pass inner_steps=1 or more"),
    (dict(inner_steps=-2), "inner_steps must be >= 1, got -2"),
    (dict(bn_mode="batch"), "bn_mode must be one of transductive, support, running, frozen; got 'batch'"),
    (dict(task_batching="gpu"), "task_batching must be one of auto, loop, vmap; got 'gpu'"),
    (dict(loss="l1"), "loss must be one of auto, cross_entropy, mse; got 'l1'"),
    (dict(eval_steps=0), "eval_steps must be >= 1, got 0"),
    (dict(seed=2**63), "seed must be below 2**63, got 9223372036854775808"),
    (dict(checkpoint_steps=1, task_batching="vmap"), "checkpoint_steps recomputes on the per-task loop only")])
@pytest.mark.parametrize("cls", [LearnerConfig, MAMLConfig])
def test_bad_config(cls, kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        cls(**kwargs)


def test_the_old_import_paths_name_the_same_objects():
    import fewshot.learners as package
    from fewshot.learners import base, batching, checks, config, result

    assert base.LearnerConfig is config.LearnerConfig is package.LearnerConfig
    assert base.check_lr is config.check_lr and base.BN_MODES is config.BN_MODES
    assert base.check_task is checks.check_task and base.RISE_FACTOR == checks.RISE_FACTOR == 1.1
    assert base.VMAP_MAX_ELEMENTS_CPU == batching.VMAP_MAX_ELEMENTS_CPU
    assert base.TaskResult is result.TaskResult is package.TaskResult
    assert base.MetaOutput is result.MetaOutput is package.MetaOutput
    assert config.LearnerConfig().no_adapt == () and LearnerConfig(no_adapt=["head"]).no_adapt == ("head",)
