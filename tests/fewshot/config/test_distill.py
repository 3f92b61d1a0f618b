"""fewshot.config.distill: the presets are the authors' protocols, and bad settings are refused."""
import pytest

from fewshot.config.distill import BATCHES_PER_EPOCH, DISTILL_PRESETS, DistillConfig
from fewshot.errors import ConfigError


def test_presets_follow_the_papers_code_but_for_per_layer_step_sizes():
    fixed, random = DISTILL_PRESETS["mnist-distill-10"], DISTILL_PRESETS["mnist-distill-100-random"]
    soft = DISTILL_PRESETS["mnist-distill-10-soft"]
    assert (fixed.images, fixed.steps, fixed.epochs, fixed.init) == (10, 1, 3, "fixed")
    assert (random.images, random.steps, random.init) == (100, 10, "random")
    assert soft.soft_labels and soft.step_size == 0.01 and soft.iterations == 350 * 59
    assert fixed.betas == (0.5, 0.999) and fixed.lr == 0.01 and fixed.batch_size == 1024
    assert fixed.iterations == 400 * BATCHES_PER_EPOCH and fixed.decay_every == 40 * 59
    assert {c.dataset for c in DISTILL_PRESETS.values()} == {"mnist", "fashion-mnist"}
    assert fixed.per_layer_step_sizes and soft.per_layer_step_sizes
    assert not random.per_layer_step_sizes


@pytest.mark.parametrize("kw, message", [
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(step_size=0.0), "step_size must be > 0"),
    (dict(decay_factor=1.5), "decay_factor must be in \\(0, 1\\]"),
    (dict(dataset="cifar"), "unknown dataset 'cifar'"),
])
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**kw)
