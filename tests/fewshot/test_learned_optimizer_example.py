"""examples/learned_optimizer.py runs, and the shipped learned optimizer trains the unseen model."""
import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "learned_optimizer.py"


def test_learned_optimizer_example_trains():
    spec = importlib.util.spec_from_file_location("learned_optimizer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    curves = module.main(steps=60)
    learned = curves["learned (l2o-mnist)"]
    assert len(learned) == 60 and learned[-1] < 0.3 * learned[0]
