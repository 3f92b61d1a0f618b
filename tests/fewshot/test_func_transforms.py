"""The one "inside a torch.func transform?" helper, at every level and for each transform kind."""
import torch

from fewshot.func_transforms import under_transform, under_vmap


def _where() -> tuple[bool, bool]:
    return under_transform(), under_vmap()


def test_outside_any_transform_both_are_false():
    assert _where() == (False, False)


def test_vmap_grad_and_their_nesting_are_told_apart():
    seen = []

    def record(x):
        seen.append(_where())
        return x.sum()

    torch.func.vmap(record)(torch.ones(2, 3))
    torch.func.grad(record)(torch.ones(3))
    torch.func.vmap(torch.func.grad(record))(torch.ones(2, 3))  # grad inside vmap: still under vmap
    torch.func.jvp(record, (torch.ones(3),), (torch.ones(3),))
    assert seen == [(True, True), (True, False), (True, True), (True, False)]
    assert _where() == (False, False)  # nothing leaks out of a finished transform
