"""fewshot.learners.config: ``LearnerConfig`` refuses bad switches in one line, and every import
path names it."""
import re

import pytest

from fewshot.errors import ConfigError
from fewshot.learners import LearnerConfig, MAMLConfig


@pytest.mark.parametrize("kwargs, message", [
    (dict(inner_steps=0), "inner_steps must be >= 1, got 0: pass inner_steps=1 or more"),
    (dict(inner_steps=-2), "inner_steps must be >= 1, got -2"),
    (dict(bn_mode="batch"),
     "bn_mode must be one of transductive, support, running, frozen; got 'batch'"),
    (dict(task_batching="gpu"), "task_batching must be one of auto, loop, vmap; got 'gpu'"),
    (dict(loss="l1"), "loss must be one of auto, cross_entropy, mse; got 'l1'"),
    (dict(eval_steps=0), "eval_steps must be >= 1, got 0"),
    (dict(seed=2**63), "seed must be below 2**63, got 9223372036854775808"),
    (dict(checkpoint_steps=1, task_batching="vmap"),
     "checkpoint_steps recomputes on the per-task loop only")])
@pytest.mark.parametrize("cls", [LearnerConfig, MAMLConfig])
def test_bad_config(cls, kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        cls(**kwargs)


def test_the_package_exports_the_config_and_result_types_from_their_modules():
    import fewshot.learners as package
    from fewshot.learners import config, result

    assert package.LearnerConfig is config.LearnerConfig
    assert package.TaskResult is result.TaskResult and package.MetaOutput is result.MetaOutput
    assert config.LearnerConfig().no_adapt == () and LearnerConfig(no_adapt=["head"]).no_adapt == (
        "head",)
