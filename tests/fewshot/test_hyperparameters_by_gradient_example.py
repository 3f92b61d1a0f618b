"""examples/hyperparameters_by_gradient.py runs, and both loops learn what they should: the decay
per weight shrinks the useless weights more than the useful ones and lowers the validation loss,
and the learned schedule lowers the validation and the held-out test loss of a 20-step run."""
import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hyperparameters_by_gradient.py"


def test_hyperparameters_by_gradient_example_learns(one_thread):
    spec = importlib.util.spec_from_file_location("hyperparameters_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main()
    decay = results["weight decay per weight (implicit)"]
    assert decay["decay on useless weights"] > 5 * decay["decay on useful weights"]
    assert decay["val after"] < 0.5 * decay["val before"]
    assert decay["test after"] < decay["test before"]
    schedule = results["learning-rate schedule (unrolled)"]
    assert schedule["val after"] < 0.2 * schedule["val before"]
    assert schedule["test after"] < 0.2 * schedule["test before"]
