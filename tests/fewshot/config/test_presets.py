"""Presets are per-learner recipe modules keyed by fewshot.learners.LEARNERS names, with the papers' numbers."""
from fewshot.config import get_preset
from fewshot.config.presets import PRESETS, RECIPE_MODULES, paper_result
from fewshot.learners import LEARNERS


def test_every_recipe_module_is_for_a_registered_learner_and_builds_its_presets():
    assert {m.LEARNER for m in RECIPE_MODULES} <= set(LEARNERS)
    for module in RECIPE_MODULES:
        for recipe in module.recipes():
            known = PRESETS[recipe.name]
            assert recipe.learner == known.learner == module.LEARNER and recipe.paper == known.paper
            assert get_preset(recipe.name).learner.name == module.LEARNER


def test_paper_numbers_sit_beside_the_recipes():
    assert paper_result("omniglot-5w1s-maml") == "98.7 ± 0.4"
    assert paper_result("mini-imagenet-5w5s-fomaml") == "63.15 ± 0.91"
    assert paper_result("omniglot-20w5s-mamlpp") == "99.33"
    assert paper_result("omniglot-5w1s-fomaml") is None  # the paper reports first order on mini-ImageNet only
    assert paper_result("no-such-preset") is None
    assert sum(r.paper is not None for r in PRESETS.values()) == 15
