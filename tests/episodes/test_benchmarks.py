"""benchmark_tasks / get_tasksets: the standard splits and test protocol in one call, on the real
Omniglot store."""
import pytest
import torch

from episodes import (
    BENCHMARKS,
    BenchmarkTasks,
    DataError,
    FixedEpisodes,
    benchmark_tasks,
    get_tasksets,
    load_split,
)


def test_omniglot_standard_protocol(omniglot_root):
    tasks = benchmark_tasks("omniglot", ways=5, shots=1, root=omniglot_root, seed=3)
    assert isinstance(tasks, BenchmarkTasks) and get_tasksets is benchmark_tasks
    # Vinyals splits, rotations as classes; no class shared between train, validation and test
    names = {k: set(s.split.class_names)
             for k, s in (("train", tasks.train), ("val", tasks.validation),
                                                       ("test", tasks.test))}
    assert [len(names[k]) for k in ("train", "val", "test")] == [4112, 688, 1692]
    characters = {k: {n.rsplit("/", 1)[0] for n in v} for k, v in names.items()}
    assert not (characters["train"] & characters["val"] or characters["train"] & characters["test"]
                or characters["val"] & characters["test"])
    # training: fresh episodes from the seed, queries = shots (the MAML reference protocol)
    assert (tasks.train.ways, tasks.train.shots, tasks.train.queries, tasks.train.seed) == (5, 1, 1,
                                                                                            3)
    assert tasks.train.sample(2).query_x.shape == (2, 5, 1, 28, 28)
    # test: 600 fixed episodes, 15 queries, the test seed, whatever the training seed
    assert (tasks.test.count, tasks.test.queries) == (600, 15)
    assert (tasks.validation.count, tasks.validation.queries) == (200, 15)
    other = benchmark_tasks("omniglot", ways=5, shots=1, root=omniglot_root, seed=0)
    want = FixedEpisodes(load_split("omniglot", "test", omniglot_root), 5, 1, 15, count=600, seed=2)
    for i in (0, 599):
        for got in (tasks.test[i], other.test[i]):
            assert torch.equal(got.support_x, want[i].support_x) and torch.equal(got.query_x,
                                                                                 want[i].query_x)
    assert repr(tasks) == ("BenchmarkTasks('omniglot/train', ways=5, shots=1, train_queries=1, "
                           "validation=200x15 queries, test=600x15 queries)")
    given = benchmark_tasks("omniglot", ways=20, shots=5, queries=5, root=omniglot_root,
                            test_episodes=10)
    assert (given.train.queries, given.validation.queries, given.test.queries,
            given.test.count) == (5, 5, 5, 10)


def test_unknown_benchmark_bad_counts_and_missing_store_are_one_line_errors(tmp_path):
    assert set(BENCHMARKS) == {"omniglot", "mini-imagenet"}
    with pytest.raises(DataError,
                       match="unknown benchmark 'cifar': choose one of omniglot, mini-imagenet"):
        benchmark_tasks("cifar", 5, 1, root=tmp_path)
    with pytest.raises(DataError, match="shots must be >= 1"):
        benchmark_tasks("omniglot", 5, 0, root=tmp_path)
    with pytest.raises(DataError, match="no omniglot store .* run `fewshot prepare omniglot"):
        benchmark_tasks("omniglot", 5, 1, root=tmp_path)
    with pytest.raises(DataError, match="mini-ImageNet images cannot be downloaded"):
        benchmark_tasks("mini-imagenet", 5, 1, root=tmp_path, download=True)
