"""restore_generator: exact continuation, one-line errors for anything else."""
import pytest
import torch

from episodes import DataError
from episodes.generator_state import restore_generator


def test_restore_continues_the_saved_stream():
    g = torch.Generator().manual_seed(3)
    torch.rand(5, generator=g)
    state = {"generator": g.get_state(), "seed": 3}
    expected = torch.rand(4, generator=g)
    other = torch.Generator().manual_seed(99)
    restore_generator(other, state, "X")
    assert torch.equal(torch.rand(4, generator=other), expected)


@pytest.mark.parametrize("state", [{}, None, {"generator": torch.zeros(3)},
                                   {"generator": torch.zeros(3, dtype=torch.uint8)}])
def test_bad_states_are_refused_naming_the_owner(state):
    with pytest.raises(DataError, match="SinusoidTasks state"):
        restore_generator(torch.Generator(), state, "SinusoidTasks")
