"""examples/custom_task_maml.py runs and meta-learning helps (vs. the same loop with 0
iterations)."""
import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_task_maml.py"


def test_custom_task_example_learns():
    spec = importlib.util.spec_from_file_location("custom_task_maml", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        untrained = module.main(iterations=0)
        trained = module.main(iterations=300)
    finally:
        torch.set_num_threads(saved)
    assert trained < 0.5 * untrained, (untrained, trained)
