"""Presets are per-learner recipe modules keyed by fewshot.learners.LEARNERS names, with the papers'
numbers."""
from fewshot.config import get_preset
from fewshot.config.presets import PRESETS, RECIPE_MODULES, paper_result
from fewshot.learners import LEARNERS


def test_every_recipe_module_is_for_registered_learners_and_builds_its_presets():
    for module in RECIPE_MODULES:
        assert set(module.LEARNERS) <= set(LEARNERS)
        for recipe in module.recipes():
            known = PRESETS[recipe.name]
            assert recipe.learner in module.LEARNERS and recipe.learner == known.learner
            assert recipe.paper == known.paper and get_preset(
                recipe.name).learner.name == recipe.learner
    # every learner of the registry but the first-order iMAML has presets, each in one family module
    with_presets = {recipe.learner for module in RECIPE_MODULES for recipe in module.recipes()}
    assert with_presets == set(LEARNERS) - {"foimaml"}


def test_paper_numbers_sit_beside_the_recipes():
    assert paper_result("omniglot-5w1s-maml") == "98.7 ± 0.4"
    assert paper_result("mini-imagenet-5w5s-fomaml") == "63.15 ± 0.91"
    assert paper_result("omniglot-20w5s-mamlpp") == "99.33"
    # the paper reports first order on mini-ImageNet only
    assert paper_result("omniglot-5w1s-fomaml") is None
    assert paper_result("no-such-preset") is None
    assert paper_result("omniglot-20w1s-metasgd") == "95.9"
    assert paper_result("mini-imagenet-5w1s-mtnet") == "51.70 ± 1.84"
    assert paper_result("mini-imagenet-5w5s-lstm-meta") == "60.60 ± 0.71"
    # the LSTM meta-learner paper has no Omniglot numbers
    assert paper_result("omniglot-5w1s-lstm-meta") is None
    assert paper_result("omniglot-20w5s-imaml").startswith("98.69 ± 0.1 (iMAML-GD")
    assert paper_result("omniglot-20w5s-imaml-hf") == "99.14 ± 0.1 (iMAML-HF)"
    assert paper_result("omniglot-20w1s-anil") == "96.2 ± 0.5"
    assert paper_result("omniglot-5w1s-anil") is None  # ANIL's paper has Omniglot 20-way only
    assert paper_result("mini-imagenet-5w5s-boil") == "66.45 ± 0.37"
    assert paper_result("omniglot-5w1s-reptile") == "97.68 ± 0.04"
    # MAML 6 + sinusoid, first-order 2, MAML++ 6, Meta-SGD 6 + sinusoid, MT-net 3, LSTM meta-learner
    # 2,
    # ANIL 4, BOIL 2, Reptile 4, iMAML-GD 4, iMAML-HF 4
    assert sum(r.paper is not None for r in PRESETS.values()) == 45
