"""Checkpoints: round trip of every state, atomicity, clear errors for bad files."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from episodes import SinusoidTasks
from fewshot.errors import CheckpointError, FewshotError
from fewshot.training.checkpoint import (
    TrainingState,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
)

IDENTITY = {"learner": "maml", "backbone": "mlp"}


def _setup(seed: int):
    torch.manual_seed(seed)  # test-only: build a model with some initial weights
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    src = SinusoidTasks(shots=5, queries=5, seed=seed)
    return model, opt, sched, src


def _step(model, opt, sched, src):
    batch = src.sample(4)
    loss = ((model(batch.support_x) - batch.support_y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss


def _save(path, model, opt, sched, src, it):
    return save_checkpoint(path, TrainingState(model, opt, sched, {"train": src}),
                           iteration=it, config={"seed": 0}, identity=IDENTITY)


def test_round_trip_resumes_identically(tmp_path):
    model, opt, sched, src = _setup(0)
    for _ in range(3):
        _step(model, opt, sched, src)
    _save(tmp_path / "last.pt", model, opt, sched, src, 3)
    py_next, np_next, torch_next = random.random(), np.random.rand(), torch.rand(3)
    for _ in range(3):
        _step(model, opt, sched, src)
    want = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2, sched2, src2 = _setup(1)  # different weights, optimizer and sampler
    ckpt = load_checkpoint(tmp_path / "last.pt", expect=IDENTITY)
    it = restore_training_state(ckpt, TrainingState(model2, opt2, sched2, {"train": src2}))
    assert it == 3
    # global RNG states restored too
    assert random.random() == py_next and np.random.rand() == np_next and torch.equal(torch.rand(3),
                                                                                      torch_next)
    for _ in range(3):
        _step(model2, opt2, sched2, src2)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_identity_mismatch(tmp_path):
    model, opt, sched, src = _setup(0)
    _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    with pytest.raises(CheckpointError, match="learner 'maml', not 'fomaml'"):
        load_checkpoint(tmp_path / "c.pt", expect={"learner": "fomaml", "backbone": "mlp"})
    with pytest.raises(CheckpointError, match="backbone 'mlp', not 'conv4'"):
        load_checkpoint(tmp_path / "c.pt", expect={"learner": "maml", "backbone": "conv4"})


def test_missing_truncated_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    model, opt, sched, src = _setup(0)
    path = _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    raw = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    flipped = bytearray(raw)
    flipped[len(raw) - 100] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "flip.pt")
    (tmp_path / "other.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a fewshot checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "head.pt").write_bytes(raw[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "head.pt")


def test_weights_from_another_architecture(tmp_path):
    model, opt, sched, src = _setup(0)
    _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    ckpt = load_checkpoint(tmp_path / "c.pt")
    other = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    with pytest.raises(CheckpointError, match="do not fit"):
        restore_training_state(ckpt, TrainingState(other))


def test_unsafe_payload_refused(tmp_path):
    """A payload that needs arbitrary code to unpickle is refused (weights_only)."""
    import hashlib
    import io

    from fewshot.training.checkpoint import MAGIC

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"format": 1, "x": Evil()}, buf)
    body = buf.getvalue()
    (tmp_path / "evil.pt").write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"
                                       + body)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(tmp_path / "evil.pt")


def _rewrite(path, payload):
    """Write ``payload`` as a checkpoint with a valid checksum."""
    from fewshot.training.checkpoint import encode_checkpoint

    path.write_bytes(encode_checkpoint(payload))


def test_a_checkpoint_is_a_plain_torch_file(tmp_path):
    """Issue 15: users open ``last.pt`` with torch's own loader (no code can run) and find the
    weights."""
    model, opt, sched, src = _setup(0)
    path = _save(tmp_path / "last.pt", model, opt, sched, src, 3)
    plain = torch.load(path, weights_only=True)
    assert plain["iteration"] == 3 and isinstance(plain["sha256"], str)
    for key, value in model.state_dict().items():
        assert torch.equal(plain["learner"][key], value)


def test_a_flipped_bit_in_a_tensor_is_caught(tmp_path):
    """PyTorch's zip reader does not check CRCs: the content digest does."""
    model, opt, sched, src = _setup(0)
    path = _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    raw = bytearray(path.read_bytes())
    weight = next(iter(model.state_dict().values())).detach().contiguous()
    at = bytes(raw).find(weight.numpy().tobytes())
    assert at > 0
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # torch itself does not notice
    with pytest.raises(CheckpointError, match="is corrupted \\(sha256 of its content mismatch\\)"):
        load_checkpoint(path)


def test_unsafe_payload_refused_in_the_current_format(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": 2, "sha256": "", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(tmp_path / "evil.pt")


def test_a_torch_file_that_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError,
                       match="not a fewshot checkpoint \\(a torch.save file without"):
        load_checkpoint(tmp_path / "w.pt")


def test_format_1_files_still_load(tmp_path):
    import hashlib
    import io

    from fewshot.training.checkpoint import MAGIC

    model, opt, sched, src = _setup(0)
    payload = load_checkpoint(_save(tmp_path / "c.pt", model, opt, sched, src, 4))
    buf = io.BytesIO()
    torch.save({**payload, "format": 1}, buf)
    body = buf.getvalue()
    (tmp_path / "old.pt").write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"
                                      + body)
    assert load_checkpoint(tmp_path / "old.pt")["iteration"] == 4


@pytest.mark.parametrize("key",
                         ["learner", "rng", "sources", "iteration", "identity", "config",
                          "optimizer",
                                 "scheduler", "extra"])
def test_valid_checksum_but_missing_entry(tmp_path, key):
    """Issue 14: a well-formed file that lacks an entry used to fail later with a KeyError."""
    model, opt, sched, src = _setup(0)
    path = _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    payload = load_checkpoint(path)
    del payload[key]
    _rewrite(path, payload)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint {path} has no '{key}' entry: it is incomplete or was not written by "
        "fewshot; resume from another checkpoint or start a new run")


@pytest.mark.parametrize("key, value",
                         [("learner", [1, 2]), ("rng", None), ("iteration", "5"),
                          ("iteration", True)])
def test_valid_checksum_but_wrong_entry_type(tmp_path, key, value):
    model, opt, sched, src = _setup(0)
    path = _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    payload = load_checkpoint(path)
    payload[key] = value
    _rewrite(path, payload)
    with pytest.raises(CheckpointError,
                       match=f"entry '{key}' is a {type(value).__name__}, not what fewshot writes: "
                             "it is damaged; resume from another checkpoint or "
                             "start a new run"):
        load_checkpoint(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    model, opt, sched, src = _setup(0)
    path = _save(tmp_path / "c.pt", model, opt, sched, src, 1)
    before = path.read_bytes()
    import episodes.files as atomic

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(FewshotError,
                       match=r"^no space left on the disk to write .*c\.pt \(No space left on "
                             r"device\)"):
        _save(path, model, opt, sched, src, 2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left


def test_written_files_get_normal_permissions(tmp_path):
    import os

    from episodes.files import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
