"""Shared set-up of the real-scan measuring scripts' tests: a random CT segmenter saved as a bundle beside a tiny
fake realdata folder (``test_accept_real._realdata``)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from livercad.runtime.checkpoint import save_checkpoint
from livercad.segment.infer import Segmenter
from tests.benchmarks.test_accept_real import BENCHMARKS, _realdata


class Measuring(NamedTuple):
    """The bundle folder, the fake realdata folder and the label-5 (liver) voxels of its CT crop's mask."""

    bundle: Path
    realdata: Path
    n_liver: int


@pytest.fixture
def measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Measuring:
    """A random 32-px CT segmenter saved as a bundle and the fake scans; ``benchmarks/`` importable and
    ``accept_real``'s phantom test cases small (48 x 48 x 16; the real run uses 128 x 128 x 48)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accept_real

    monkeypatch.setattr(accept_real, "PHANTOM_SHAPE", (48, 48, 16))  # phantom_test_case reads it there
    seg = Segmenter.random(image_size=32, encoder="resnet18")
    save_checkpoint(tmp_path / "bundle" / "segmenter.pt", seg.model.state_dict(), seg.meta)
    n_liver = _realdata(tmp_path / "realdata")
    return Measuring(tmp_path / "bundle", tmp_path / "realdata", n_liver)
