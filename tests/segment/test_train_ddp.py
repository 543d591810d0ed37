"""Stage-1 training with Lightning DDP: 2 CPU processes (gloo), launched as users launch it.

The command runs in a subprocess: Lightning's ``ddp`` strategy starts rank 1 by re-running the same
command line (its documented CPU/GPU launcher), which must not be pytest itself. ``ddp_spawn`` would run
``fit`` in spawned children and hand only the final weights back to the parent, losing the best-epoch
weights and history that ``train_segmenter`` exports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from livercad.io.manifest import ManifestRow, write_manifest
from livercad.io.nifti import load_mask, load_volume, save_mask, save_volume
from livercad.runtime.checkpoint import load_checkpoint
from livercad.segment.data import model_space_mask
from livercad.segment.infer import Segmenter, segment_prepared, segment_volume

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH, BATCH, EPOCHS, WORLD = 4, 4, 2, 2


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ManifestRow], str]:
    """Four 40x40x6 CT cases (ellipsoid liver, varied axis flips), trained with --strategy ddp --devices 2."""
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(np.arange(40), np.arange(40), np.arange(6), indexing="ij")
    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        liver = ((x - 14 - i) / 9.0) ** 2 + ((y - 20) / 11.0) ** 2 + ((z - 2.5) / 2.2) ** 2 <= 1.0
        affine = np.diag([-1.0 if i % 2 else 1.0, 1.0, 4.0, 1.0])
        vol = load_volume(save_volume(np.where(liver, 120.0, -20.0) + rng.normal(0, 10, liver.shape), affine,
                                      root / f"c{i}.nii.gz"))
        save_mask(liver.astype(np.uint8), vol, root / f"c{i}_mask.nii.gz")
        rows.append(ManifestRow(f"c{i}", f"p{i}", root / f"c{i}.nii.gz", root / f"c{i}_mask.nii.gz", split=split))
    write_manifest(rows, root / "manifest.csv")
    cfg = {"data": {"manifest": str(root / "manifest.csv")}, "preprocess": {"image_size": 32},
           "segment": {"model": {"encoder": "resnet18", "encoder_weights": "none"},
                       "train": {"accelerator": "cpu", "batch_size": BATCH, "steps_per_epoch": STEPS_PER_EPOCH,
                                 "max_epochs": EPOCHS, "max_minutes": 30.0, "patience": 10, "seed": 5}}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for var in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "train", "segment", "-o", str(root / "out"),
                           "-c", str(root / "cfg.yaml"), "--devices", str(WORLD), "--strategy", "ddp"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out", rows, proc.stdout + proc.stderr


def test_ddp_ran_two_gloo_processes_and_split_the_batches(ddp_run: tuple[Path, list[ManifestRow], str]) -> None:
    out, _, log = ddp_run
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log  # Lightning's line from each rank
    _, meta = load_checkpoint(out / "segmenter.pt")
    # the sampler draws STEPS_PER_EPOCH * BATCH slices per epoch; each of the 2 ranks takes half of them
    assert meta["history"]["steps"] == EPOCHS * STEPS_PER_EPOCH * BATCH // (WORLD * BATCH) == 4
    train = meta["config"]["segment"]["train"]
    assert (train["strategy"], train["devices"], train["accelerator"]) == ("ddp", WORLD, "cpu")
    assert list((out / "lightning" / "checkpoints").glob("best-*.ckpt"))


def test_ddp_checkpoint_loads_and_predicts(ddp_run: tuple[Path, list[ManifestRow], str]) -> None:
    out, rows, _ = ddp_run
    seg = Segmenter.load(out / "segmenter.pt", precision="fp32", device="cpu")
    test = load_volume(rows[3].image)
    mask = segment_volume(seg, test).segmentation.mask
    assert mask.shape == test.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    # the recorded best Dice was reduced over both ranks' halves of the validation slices: it equals the 3-D
    # Dice of the exported weights on the whole validation volume
    val = load_volume(rows[2].image)
    prepared = seg.prepare(val)
    ref = model_space_mask(prepared, load_mask(rows[2].mask, val)).bool()
    pred = segment_prepared(seg, prepared) > 0.5
    dice = 2 * (pred & ref).sum().item() / max(pred.sum().item() + ref.sum().item(), 1)
    assert seg.meta["history"]["best_val_dice"] == pytest.approx(dice, abs=2e-3)
