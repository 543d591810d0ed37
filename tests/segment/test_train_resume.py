"""Training killed mid-run resumes from its last checkpoint (stage 1 by SIGKILL, stage 2 by a crash).

Also: the checkpoint visible under ``last.ckpt`` is always complete, resuming loads weights-only (a
code-executing pickle is refused without running), and a checkpoint of a different run is refused.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from livercad.classify import fit as cls_train
from livercad.classify.infer import Classifier
from livercad.cli import app
from livercad.config import ClassifyConfig, TrainConfig
from livercad.errors import CheckpointError
from livercad.runtime.checkpoint import load_checkpoint
from livercad.segment.infer import Segmenter
from livercad.types import CaseSlices
from tests.conftest import TINY

pytestmark = pytest.mark.slow

# 2 epochs x 3 steps of a 2.3 M-parameter U-Net on 32 px slices; a generous budget keeps it step-bound
MICRO = [*TINY, "data.phantom.n=6", "data.phantom.shape=[40, 40, 8]", "preprocess.image_size=32",
         "segment.model.encoder=tu-test_resnet", "segment.train.max_epochs=2", "segment.train.max_minutes=60"]
TOTAL_STEPS = 6

_TRAIN = """
import sys
from pathlib import Path
from livercad.config import load_config
from livercad.pipeline.training.orchestrate import cohort_rows
from livercad.segment.fit import train_segmenter
out, cfg = Path(sys.argv[1]), load_config(None, sys.argv[2:])
train_segmenter(cohort_rows(cfg, out), cfg, out, progress=False, checkpoint_every_s=0)  # last.ckpt every step
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.01)
    return False


def test_stage1_killed_mid_run_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "seg"
    ckpt_dir = out / "lightning" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN, str(out), *MICRO], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, env={**os.environ})
    appeared = _wait_for(ckpt_dir / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert appeared, proc.stderr.read().decode()[-2000:]
    assert not (out / "segmenter.pt").exists()  # it was killed before the end
    killed = torch.load(ckpt_dir / "last.ckpt", weights_only=True)  # what is visible is complete and safe
    k = int(killed["global_step"])
    assert 1 <= k < TOTAL_STEPS

    # the resumed run goes through the CLI (in this process: it saves the imports of a second interpreter)
    sets = [a for s in MICRO for a in ("--set", s)]
    res = CliRunner().invoke(app, ["train", "segment", "-o", str(out), "--resume", *sets])
    assert res.exit_code == 0, res.output[-2000:]
    meta = load_checkpoint(out / "segmenter.pt")[1]
    h = meta["history"]
    # continued from the killed run's step (not from 0) to the planned end
    assert h["resumed_from_step"] == k and h["steps"] == TOTAL_STEPS and h["steps_run"] == TOTAL_STEPS - k
    assert h["stopped_by"] == "max_epochs" and h["lr_schedule"] == "steps"
    epochs = [e["epoch"] for e in h["per_epoch"]]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 1
    assert h["best_val_dice"] == max(e["val_dice"] for e in h["per_epoch"])  # best tracked across the kill
    Segmenter.load(out / "segmenter.pt", precision="fp32", device="cpu")
    best = list(ckpt_dir.glob("best-*.ckpt"))
    assert len(best) == 1 and torch.load(best[0], weights_only=True)["global_step"] > 0
    assert not list(ckpt_dir.glob(".*.tmp*"))  # a temp file of the killed write is cleaned up


def _case(i: int, label: int, z: int = 4, s: int = 32) -> CaseSlices:
    """Body disc, a liver square whose brightness is the class (as in tests/classify)."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[:s, :s]
    img = np.repeat(np.where((yy - s / 2) ** 2 + (xx - s / 2) ** 2 < (0.45 * s) ** 2, 0.0, -1.0)[None], z, 0)
    mask = np.zeros((z, s, s), np.uint8)
    r, c = rng.integers(6, 10, size=2)
    mask[1:z - 1, r:r + 11, c:c + 11] = 1
    img = (np.where(mask, 0.6 if label else 0.1, img) + rng.normal(0, 0.05, img.shape)).astype(np.float32)
    m = torch.from_numpy(mask)
    return CaseSlices(f"c{i}", f"p{i}", label, torch.from_numpy(img).half(), m.half(), m, m.clone())


TRAIN, VAL = [_case(i, i % 2) for i in range(6)], [_case(100 + i, i % 2) for i in range(4)]


def _cfg(lr: float = 1e-2) -> ClassifyConfig:
    t = TrainConfig(max_epochs=3, steps_per_epoch=3, batch_size=4, lr=lr, patience=5, max_minutes=60)
    return ClassifyConfig(backbone="test_resnet", weights="none", strategy="frozen", region="mask", image_size=32,
                          train=t)


class _Crash(Exception):
    pass


def _crash_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    original = cls_train.ClassifierModule.training_step

    def step_or_crash(self, batch, i):  # noqa: ANN001, ANN202
        if self.global_step == step:
            raise _Crash(f"killed at step {step}")
        return original(self, batch, i)

    monkeypatch.setattr(cls_train.ClassifierModule, "training_step", step_or_crash)


def test_stage2_interrupted_mid_epoch_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        _crash_at(m, 4)  # mid epoch 1, after epoch 0's validation
        with pytest.raises(_Crash):
            cls_train.train_classifier(TRAIN, VAL, _cfg(), tmp_path, progress=False, checkpoint_every_s=0)
    last = tmp_path / "lightning" / "checkpoints" / "last.ckpt"
    assert not (tmp_path / "classifier.pt").exists()
    assert torch.load(last, weights_only=True)["global_step"] == 4
    done = cls_train.train_classifier(TRAIN, VAL, _cfg(), tmp_path, progress=False, resume=True)
    meta = done.meta
    assert meta["resumed_from_step"] == 4 and meta["steps"] == 9 and meta["steps_run"] == 5
    assert [h["epoch"] for h in done.history] == [0, 1, 2]  # epoch 0's record survived the crash
    assert meta["best_val_score"] == pytest.approx(max(h["val_score"] for h in done.history), rel=1e-6)
    assert Classifier.load(tmp_path / "classifier.pt").meta["resume_key"] == meta["resume_key"]

    # resuming a finished run returns its export without training again
    with monkeypatch.context() as m:
        _crash_at(m, 0)
        again = cls_train.train_classifier(TRAIN, VAL, _cfg(), tmp_path, progress=False, resume=True)
    assert again.meta["resume_key"] == meta["resume_key"] and again.history == done.history

    # a checkpoint of a different run (other learning rate, other cases) is refused, naming what differs
    with pytest.raises(CheckpointError, match=r"train\.lr differ"):
        cls_train.train_classifier(TRAIN, VAL, _cfg(lr=1e-3), tmp_path, progress=False, resume=True)
    with pytest.raises(CheckpointError, match="train_cases differ"):
        cls_train.train_classifier(TRAIN[:-1], VAL, _cfg(), tmp_path, progress=False, resume=True)


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {_MARKER}",))


_MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"livercad_resume_pwned_{os.getpid()}"


def test_resume_refuses_a_code_executing_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "lightning" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(pickle.dumps({"state_dict": _Evil()}))
    with pytest.raises(CheckpointError, match="last.ckpt: refused to load"):
        cls_train.train_classifier(TRAIN, VAL, _cfg(), tmp_path, progress=False, resume=True)
    assert not _MARKER.exists()


def test_a_failed_checkpoint_write_leaves_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from livercad.runtime import resume

    path = tmp_path / "last.ckpt"
    io = resume.SafeCheckpointIO({"seed": 1})
    io.save_checkpoint({"global_step": 3}, path)

    def half_then_die(obj, f):  # noqa: ANN001, ANN202
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(resume.torch, "save", half_then_die)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 4}, path)
    assert io.load_checkpoint(path)["global_step"] == 3 and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    with pytest.raises(CheckpointError, match=r"seed differ"):
        resume.SafeCheckpointIO({"seed": 2}).load_checkpoint(path)
