"""Safe checkpoints: round trip, sha256, refusal of code-executing pickles, atomic replacement."""

from __future__ import annotations

import hashlib
import pathlib

import pytest
import torch

from livercad.errors import CheckpointError
from livercad.runtime import checkpoint as ckpt
from livercad.runtime.checkpoint import load_checkpoint, save_checkpoint


class _Evil:
    """Unpickling this touches a marker file: stands in for arbitrary code execution."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_round_trip_keeps_tensors_meta_and_records_sha256(tmp_path):
    state = {"a.weight": torch.randn(3, 4), "a.bias": torch.arange(3, dtype=torch.int64)}
    meta = {"arch": "Unet", "history": {"best": 0.97, "epochs": [1, 2]}, "none": None}
    path = save_checkpoint(tmp_path / "sub" / "m.pt", state, meta)
    loaded, got = load_checkpoint(path)
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert {k: got[k] for k in meta} == meta
    assert got["checkpoint"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_code_executing_pickle_is_refused_and_named(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "state_dict": {}, "meta": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    assert not marker.exists()
    # the file really would run code when unpickled unsafely (so the test above can fail)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_foreign_and_missing_files_are_checkpoint_errors(tmp_path):
    foreign = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a livercad checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip or pickle")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)


def test_non_json_meta_and_non_tensor_state_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "a.pt", {"w": torch.ones(1)}, {"bad": object()})
    with pytest.raises(CheckpointError, match="expected a tensor"):
        save_checkpoint(tmp_path / "b.pt", {"w": [1.0]}, {})
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(2)}, {"v": 1})

    def broken_save(obj, f):
        pathlib.Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": torch.zeros(2)}, {"v": 2})
    monkeypatch.undo()
    state, meta = load_checkpoint(path)
    assert meta["v"] == 1 and torch.equal(state["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
