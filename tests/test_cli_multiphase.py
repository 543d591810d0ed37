"""Multi-phase cases through the command line: `livercad phantom --phases`, `train pipeline`, `predict`.

A phantom CT cohort with three phases of one label map (portal-venous `image`, `image_noncontrast`,
`image_arterial`) trains both stages on 9-channel (stage 1) and 9-channel (stage 2) inputs; prediction reads
the phases from the manifest's columns or from a 4-D NIfTI (`--channels-axis`), and a case that lacks a phase
or whose phases lie on different grids fails alone, with a one-line reason naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from livercad.cli import app
from livercad.runtime.checkpoint import load_checkpoint
from tests.conftest import TINY

runner = CliRunner()
IMAGES = ["image", "image_noncontrast", "image_arterial"]
MICRO = [*TINY, "data.phantom.n=6", "data.phantom.shape=[40, 40, 8]", "preprocess.image_size=32",
         "segment.model.encoder=tu-test_resnet", "classify.backbone=test_resnet", "classify.image_size=32",
         "segment.model.decoder_channels=[16, 16, 8, 8, 8]", "data.phantom.phases=[non-contrast, arterial]",
         f"segment.model.images=[{', '.join(IMAGES)}]",
         "inference.backend=torch", "inference.coarse_to_fine=false", "inference.qc_images=false",
         "inference.report=false"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _predict_manifest(data: Path, out: Path) -> Path:
    """Four cases: complete, without its arterial phase, an arterial phase of another shape, and one case twice
    (its columns, and a 4-D NIfTI of its three phases)."""
    rows = [{k: (str(data / v) if k.startswith("image") or k == "mask" else v) for k, v in r.items()}
            for r in _rows(data / "manifest.csv")]
    full, missing, off_grid, twice = rows[:4]
    missing["image_arterial"] = ""
    small = nib.load(off_grid["image_arterial"])
    off_grid["image_arterial"] = str(out / "small_arterial.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(small.dataobj)[:, :, :-1], small.affine, small.header), out / "small.nii.gz")
    Path(out / "small.nii.gz").rename(off_grid["image_arterial"])
    first = nib.load(twice["image"])
    stack = np.stack([np.asarray(nib.load(twice[c]).dataobj, dtype=np.float32) for c in IMAGES], axis=-1)
    nib.save(nib.Nifti1Image(stack, first.affine, first.header), out / "stack4d.nii.gz")
    as_4d = {**twice, "case_id": f"{twice['case_id']}_4d", "image": str(out / "stack4d.nii.gz"),
             "image_noncontrast": "", "image_arterial": ""}
    return _write(out / "predict.csv", [full, missing, off_grid, twice, as_4d])


def test_a_multi_phase_cohort_trains_and_predicts_through_the_cli(tmp_path: Path) -> None:
    train = tmp_path / "train"
    args = ["train", "pipeline", "-o", str(train), "-q"]
    for item in MICRO:
        args += ["-s", item]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for stage in ("segmenter.pt", "classifier.pt"):
        meta = load_checkpoint(train / "model" / stage)[1]
        assert meta["images"] == IMAGES and meta["in_channels"] == 9, stage

    out = tmp_path / "out"
    out.mkdir()
    manifest = _predict_manifest(train / "data", out)
    res = runner.invoke(app, ["predict", "-i", str(manifest), "-m", str(train / "model"), "-o", str(out),
                              "--channels-axis", "-q"])
    assert res.exit_code == 3, res.output  # two cases failed, the batch went on
    done = {r["case_id"]: r for r in _rows(out / "predictions.csv") if r.get("predicted_label")}
    ids = [r["case_id"] for r in _rows(manifest)]
    assert set(done) == {ids[0], ids[3], ids[4]}
    assert all(r["verdict_status"] == "ok" for r in done.values())
    twice = [nib.load(out / "masks" / f"{i}.nii.gz") for i in ids[3:]]
    assert np.array_equal(np.asarray(twice[0].dataobj), np.asarray(twice[1].dataobj))  # columns == 4-D stack
    failed = {r["case_id"]: r["reason"] for r in _rows(out / "failures.csv")}
    assert set(failed) == {ids[1], ids[2]}
    assert all("\n" not in e for e in failed.values())
    assert f"case '{ids[1]}' has no 'image_arterial' image" in failed[ids[1]]
    assert "small_arterial.nii.gz" in failed[ids[2]] and "share one grid" in failed[ids[2]]


def test_the_phantom_command_writes_phase_columns(tmp_path: Path) -> None:
    res = runner.invoke(app, ["phantom", "-o", str(tmp_path), "--n", "1", "--size", "32x32x8",
                              "--phases", "non-contrast,arterial,delayed"])
    assert res.exit_code == 0, res.output
    (row,) = _rows(tmp_path / "manifest.csv")
    for column in ("image_noncontrast", "image_arterial", "image_delayed"):
        assert (tmp_path / row[column]).is_file()
    res = runner.invoke(app, ["phantom", "-o", str(tmp_path), "--n", "1", "--phases", "portal-venous"])
    assert res.exit_code == 2 and "phases" in res.output
