"""A learner's names are declared once, beside it (``SPECS``): defaults a name starts from, settings
it forces."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.learners import (
    LEARNERS,
    MAML,
    MAMLConfig,
    build_learner,
    learner_config,
    register_learner,
)
from fewshot.learners.spec import LearnerSpec


def test_defaults_are_overridable_and_forced_settings_hold_over_an_instance():
    assert learner_config("mamlpp").msl and learner_config("mamlpp", {"msl": False}).msl is False
    assert learner_config("mamlpp") == MAMLConfig.mamlpp()
    torch.manual_seed(0)  # test-only module init
    fo = build_learner("fomaml", nn.Linear(2, 1), MAMLConfig(first_order=False))
    # the name means first order, whatever instance it is given
    assert fo.config.first_order is True
    assert build_learner("imaml-hf", nn.Linear(2, 1)).config.inner_solver == "hf"
    with pytest.raises(ConfigError, match="unknown fomaml config key\\(s\\) bogus: valid keys are"):
        learner_config("fomaml", {"bogus": 1})


def test_register_learner_takes_a_spec():
    spec = LearnerSpec("maml-two-steps", MAML, defaults={"inner_steps": 2})
    try:
        register_learner(spec)
        torch.manual_seed(0)  # test-only module init
        assert build_learner("maml-two-steps", nn.Linear(2, 1)).config.inner_steps == 2
    finally:
        LEARNERS.pop("maml-two-steps", None)
    with pytest.raises(ConfigError, match="register_learner takes a LearnerSpec, got tuple"):
        register_learner(("mine", MAML, MAMLConfig))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown learner 'mine': choose one of anil, boil"):
        learner_config("mine")
