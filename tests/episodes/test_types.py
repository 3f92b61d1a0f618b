"""The shared containers' reprs: one short line of sizes and shapes, never the tensors' values."""
import torch

from episodes import ClassSplit, EpisodeSampler, TaskBatch, from_arrays


def _split(classes: int, per_class: int, shape=(1, 28, 28), dtype=torch.uint8,
           name="omniglot/train") -> ClassSplit:
    data = torch.zeros(classes * per_class, *shape, dtype=dtype)
    offsets = torch.arange(0, classes * per_class + 1, per_class)
    return ClassSplit(data, offsets, [f"c{i}" for i in range(classes)], name=name)


def test_class_split_repr_names_the_sizes():
    split = _split(4112, 20)
    assert repr(split) == (
        "ClassSplit(name='omniglot/train', classes=4112, images=82240, shape=[1, 28, 28], "
        "dtype=uint8)")
    features = from_arrays(torch.randn(30, 64, generator=torch.Generator().manual_seed(0)),
                           [i % 3 for i in range(30)])
    assert repr(
        features) == "ClassSplit(name='custom', classes=3, images=30, shape=[64], dtype=float32)"


def test_task_batch_and_task_reprs_give_shapes_not_values():
    split = _split(20, 20)
    batch = EpisodeSampler(split, ways=5, shots=1, queries=15, seed=0).sample(8)
    assert repr(
        batch) == "TaskBatch(tasks=8, ways=5, support=[8, 5, 1, 28, 28], query=[8, 75, 1, 28, 28])"
    assert repr(batch.task(0)) == "Task(support=[5, 1, 28, 28], query=[75, 1, 28, 28])"
    regression = TaskBatch(torch.zeros(4, 10, 1), torch.zeros(4, 10, 1), torch.zeros(4, 5, 1),
                           torch.zeros(4, 5, 1))
    assert repr(regression) == "TaskBatch(tasks=4, ways=None, support=[4, 10, 1], query=[4, 5, 1])"
    assert "tensor" not in repr(batch) + repr(split) + str(batch)  # str() is the same short line
