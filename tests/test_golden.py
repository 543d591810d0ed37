"""Golden outputs of the tiny bundle: masks bitwise, probabilities to 1e-6, metrics.json and predictions.csv equal.

The tiny bundle is trained in the test session from fixed seeds (``tests/conftest.py``), so this test pins
stage-1 training, the stage-1 cache that stage 2 trains on, stage-2 training and the whole prediction flow.
It is the guard of refactors that must not change behaviour. The digests hold for the platform that
recorded them (torch version and CPU instruction set: float kernels differ between them); elsewhere the test
is skipped and says why. Rewrite them, after a change that is meant to change outputs, with
``LIVERCAD_WRITE_GOLDEN=1 pytest tests/test_golden.py``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pytest

if TYPE_CHECKING:
    from livercad.pipeline.training.orchestrate import PipelineTraining

GOLDEN = Path(__file__).parent / "golden" / "tiny_predict.json"
PATH_COLUMNS = ("mask_path", "seg_path", "input")
PROB_TOL = 1e-6

pytestmark = pytest.mark.slow


def _platform() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def _mask_digest(path: Path) -> str:
    img = nib.load(path)
    voxels = np.asarray(img.dataobj)
    h = hashlib.sha256(str((voxels.shape, str(voxels.dtype))).encode())
    h.update(np.ascontiguousarray(voxels).tobytes())
    h.update(np.asarray(img.affine, np.float64).tobytes())
    return h.hexdigest()


def _outputs(out: Path, root: Path) -> dict:
    """What the golden file holds: mask digests, predictions.csv rows (paths made relative) and metrics.json."""
    rows = []
    for row in csv.DictReader((out / "predictions.csv").open()):
        for col in PATH_COLUMNS:
            if row.get(col):
                row[col] = Path(row[col]).relative_to(root).as_posix()
        rows.append(row)
    masks = {p.name: _mask_digest(p) for p in sorted((out / "masks").glob("*.nii.gz"))}
    return {"masks": masks, "predictions": rows, "metrics": json.loads((out / "metrics.json").read_text())}


def _compare_rows(got: list[dict], want: list[dict]) -> None:
    assert [r["case_id"] for r in got] == [r["case_id"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), g["case_id"]
        for key in w:
            if key.startswith("prob_"):
                assert abs(float(g[key]) - float(w[key])) <= PROB_TOL, (g["case_id"], key)
            else:
                assert g[key] == w[key], (g["case_id"], key, g[key], w[key])


def test_tiny_bundle_outputs_match_the_golden_file(tiny_trained: PipelineTraining, tmp_path: Path) -> None:
    from livercad.io.manifest import write_manifest
    from livercad.pipeline.predict.run import run_pipeline

    root = Path(tiny_trained.bundle).parent
    write_manifest(tiny_trained.rows, root / "golden.csv")
    out = root / "golden_out"
    run_pipeline(root / "golden.csv", out, model=Path(tiny_trained.bundle), progress=False, resume=False)
    got = {"platform": _platform(), **_outputs(out, root)}
    if os.environ.get("LIVERCAD_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    if want["platform"] != got["platform"]:
        pytest.skip(f"golden outputs were recorded on {want['platform']}, this is {got['platform']}")
    assert got["masks"] == want["masks"]
    _compare_rows(got["predictions"], want["predictions"])
    assert got["metrics"] == want["metrics"]
