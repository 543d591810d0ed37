"""Stage 1 for one case, the one way: liver labels, ground truth to model space, the stage-2 input, evaluation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from livercad.config import load_config
from livercad.errors import InputError
from livercad.io.manifest import ManifestRow
from livercad.io.nifti import load_volume, save_mask, save_volume
from livercad.pipeline.predict.inputs import case_from_row
from livercad.pipeline.stage1 import METRICS, Stage1Options, case_slices, evaluate_segmenter, open_case, run_stage1
from livercad.pipeline.training.orchestrate import stage1_cache
from livercad.segment.data import model_space_mask
from livercad.segment.infer import segment_volume
from tests.segment.test_seg_infer import _bright_segmenter, _canonical_case, _dice, _reoriented

SPACING = (1.5, 1.5, 4.0)


def _labelled_row(folder: Path, liver_labels: str) -> tuple[ManifestRow, np.ndarray]:
    """A CT scan (40 x 36 x 6: padded to 40, resized to 32, so nearest and bilinear differ) whose label map
    has liver (1) and a tumour (2), both at 150 HU; the row's ``liver_labels`` column is ``liver_labels``."""
    x, y, z = np.meshgrid(np.arange(40), np.arange(36), np.arange(6), indexing="ij")
    labels = np.zeros((40, 36, 6), np.uint8)
    labels[((x - 15) / 9.0) ** 2 + ((y - 17) / 11.0) ** 2 <= 1.0] = 1
    labels[((x - 27) / 5.0) ** 2 + ((y - 22) / 4.0) ** 2 <= 1.0] = 2
    labels[:, :, [0, 5]] = 0
    image = np.where(labels > 0, 150.0, -1000.0).astype(np.float32)
    vol = load_volume(save_volume(image, np.diag([*SPACING, 1.0]), folder / "c1.nii.gz"))
    save_mask(labels, vol, folder / "c1_mask.nii.gz")
    extra = {"liver_labels": liver_labels, "modality": "ct"}
    return ManifestRow("c1", "p1", folder / "c1.nii.gz", folder / "c1_mask.nii.gz", "cirrhosis", "test", extra), labels


@pytest.mark.parametrize(("column", "config", "counted"), [("", None, [1, 2]), ("2", None, [2]), ("2", [1], [1])])
def test_liver_labels_come_from_the_config_else_the_row_in_the_cache_and_when_opening(
        tmp_path: Path, column: str, config: list[int] | None, counted: list[int]) -> None:
    row, labels = _labelled_row(tmp_path, column)
    want = np.isin(labels, counted)
    opened = open_case(case_from_row(row, run_modality="ct"), liver_labels=config)  # prediction, evaluation
    assert np.array_equal(opened.reference, want)
    overrides = ["preprocess.image_size=32", "classify.classes=[normal, cirrhosis]"]
    cfg = load_config(None, [*overrides, *([f"data.liver_labels={config}"] if config else [])])
    seg = _bright_segmenter()
    [cached] = stage1_cache(seg, [row], cfg)  # stage-2 training and the ablation study
    assert torch.equal(cached.slices.gt, model_space_mask(seg.prepare(opened.volume, "ct"), want))
    assert cached.seg_metrics["ref_volume_ml"] == pytest.approx(want.sum() * np.prod(SPACING) / 1000)
    assert cached.mask is None and (cached.slices.label, cached.slices.label_name) == (1, "cirrhosis")


def test_prediction_reads_the_reference_with_the_bundle_config_liver_labels(
        tmp_path: Path, make_bundle: Callable[..., Path], manifest_csv: Callable[..., Path]) -> None:
    from livercad.pipeline.predict.run import run_pipeline

    _, labels = _labelled_row(tmp_path, "1,2")
    manifest = manifest_csv(tmp_path / "m.csv", "case_id,image,mask,liver_labels",
                            ["c1,c1.nii.gz,c1_mask.nii.gz,\"1,2\""])
    results = {}
    for name, overrides in (("row", []), ("config", ["data.liver_labels=[2]"])):
        bundle = make_bundle(name, classifier=False, overrides=overrides)
        [case] = run_pipeline(manifest, tmp_path / f"out_{name}", model=bundle, progress=False).cases
        results[name] = case.segmentation_metrics["ref_volume_ml"]
    voxel_ml = np.prod(SPACING) / 1000
    assert results == pytest.approx({"row": (labels > 0).sum() * voxel_ml, "config": (labels == 2).sum() * voxel_ml})


def test_ground_truth_goes_to_model_space_the_way_the_predicted_mask_does(tmp_path: Path) -> None:
    row, _ = _labelled_row(tmp_path, "")
    seg = _bright_segmenter()
    opened = open_case(case_from_row(row), trained=seg.modalities)
    s1 = run_stage1(seg, opened, Stage1Options(classes=("normal", "cirrhosis")))
    prepared = seg.prepare(opened.volume, "ct")
    assert torch.equal(s1.slices.gt, model_space_mask(prepared, opened.reference))  # bilinear, threshold 0.5
    assert torch.equal(s1.slices.mask, model_space_mask(prepared, s1.mask))
    nearest = (prepared.from_original(opened.reference.astype(np.uint8)) > 0.5).to(torch.uint8)
    assert not torch.equal(s1.slices.gt, nearest)  # the case was made so that the two ways differ
    assert s1.seg_metrics["dice"] == pytest.approx(_dice(s1.mask, opened.reference))
    assert s1.modality == "ct" and s1.row is row and s1.slices.image.dtype == torch.float16


def test_without_a_stage_2_input_the_mask_and_scores_are_the_same(tmp_path: Path, monkeypatch) -> None:
    import livercad.segment.infer as seg_infer

    row, _ = _labelled_row(tmp_path, "")
    seg = _bright_segmenter()
    opened = open_case(case_from_row(row), trained=seg.modalities)
    calls: list[int] = []
    original = seg_infer.model_space_mask
    monkeypatch.setattr(seg_infer, "model_space_mask", lambda *a, **k: calls.append(1) or original(*a, **k))
    full = run_stage1(seg, opened, Stage1Options(classes=("normal", "cirrhosis")))
    assert full.slices is not None and len(calls) == 1  # the predicted mask went to model space once
    lean = run_stage1(seg, opened, Stage1Options(classes=("normal", "cirrhosis"), slices=False))
    assert lean.slices is None and len(calls) == 1  # and not again without a stage-2 input
    assert np.array_equal(lean.mask, full.mask) and lean.seg_metrics == full.seg_metrics


def test_a_modality_the_segmenter_was_not_trained_on_is_refused_with_its_source(tmp_path: Path) -> None:
    row, _ = _labelled_row(tmp_path, "")
    known: dict[str, object] = {}
    mr_row = ManifestRow(row.case_id, row.patient_id, row.image, row.mask, extra={"modality": "mr"})
    with pytest.raises(InputError, match=r"trained on \['ct'\].*modality from the case's record"):
        open_case(case_from_row(mr_row), trained=["ct"], known=known)
    assert (known["modality"], known["modality_source"], known["input_format"]) == ("mr", "case", "nifti")


def _segment_output(z: int = 3, s: int = 8) -> SimpleNamespace:
    """A stand-in SegmentOutput: original grid (X=s, Y=s, Z=z) equals model space up to the axis order."""
    mask = torch.zeros(z, s, s, dtype=torch.uint8)
    mask[1, 2:5, 2:5] = 1
    prepared = SimpleNamespace(image=torch.rand(z, s, s), spacing=(1.0, 1.0, 2.0),
                               from_original=lambda a, mode="nearest": torch.as_tensor(a).permute(2, 0, 1).float())
    seg = SimpleNamespace(mask=mask.permute(1, 2, 0).numpy())
    return SimpleNamespace(prepared=prepared, prob_model=mask.float() * 0.9, mask_model=mask, segmentation=seg)


def test_case_slices_takes_the_record_and_the_class_list() -> None:
    from livercad.classify.data import resolve_labels

    out = _segment_output()
    row = ManifestRow("c7", "p7", Path("c7.nii.gz"), label="cirrhosis")
    cs = case_slices(row, out, classes=("normal", "cirrhosis"), reference=out.segmentation.mask)
    assert (cs.case_id, cs.patient_id, cs.label, cs.label_name) == ("c7", "p7", 1, "cirrhosis")
    assert cs.image.dtype == torch.float16 and cs.prob.dtype == torch.float16 and cs.mask.dtype == torch.uint8
    assert torch.equal(cs.gt, out.mask_model) and cs.spacing == (1.0, 1.0, 2.0)
    other = case_slices(ManifestRow("c8", "", Path("c8.nii.gz"), label="steatosis"), out, classes=("normal",))
    assert (other.patient_id, other.label, other.label_name, other.gt) == ("c8", None, "steatosis", None)
    relabelled, skipped = resolve_labels([cs, other], ["cirrhosis", "normal"])
    assert [c.label for c in relabelled] == [0] and skipped == {"steatosis": 1}
    with pytest.raises(InputError, match="differs from the input grid"):
        case_slices(row, out, reference=np.zeros((2, 2), bool))


def test_evaluate_segmenter_scores_on_the_original_grid(tmp_path: Path) -> None:
    image, liver, affine = _canonical_case(5.0)
    rows = []
    for i, codes in enumerate(["RAS", "PIR"]):
        data, ref, aff, _ = _reoriented(image, liver, affine, codes, False)
        vol = load_volume(save_volume(data, aff, tmp_path / f"c{i}.nii.gz"))
        save_mask(ref.astype(np.uint8), vol, tmp_path / f"c{i}_mask.nii.gz")
        rows.append(ManifestRow(f"c{i}", f"p{i}", tmp_path / f"c{i}.nii.gz", tmp_path / f"c{i}_mask.nii.gz"))
    rows.append(ManifestRow("nomask", "p", tmp_path / "c0.nii.gz"))  # skipped
    evaluation = evaluate_segmenter(_bright_segmenter(), rows)
    per_case, summary = evaluation.per_case, evaluation.summary
    assert [c["case_id"] for c in per_case] == ["c0", "c1"]
    seg = _bright_segmenter()
    for c, row in zip(per_case, rows, strict=False):
        vol = load_volume(row.image)
        mask = segment_volume(seg, vol).segmentation.mask
        ref = load_volume(row.mask).data > 0
        assert c["dice"] == pytest.approx(_dice(mask, ref), abs=1e-6)
        assert c["ref_volume_ml"] == pytest.approx(ref.sum() * np.prod(vol.spacing) / 1000, rel=1e-6)
    assert summary["dice"]["mean"] == pytest.approx(np.mean([c["dice"] for c in per_case]))
    assert set(METRICS) <= set(summary)


def test_stage2_names_the_case_a_stage1_run_built_no_input_for() -> None:
    from livercad.types import Stage1Case

    case = Stage1Case(ManifestRow("c7", "p7", Path("c7.nii.gz")), None, {}, "ct")
    with pytest.raises(ValueError, match="case c7: stage 1 ran without the stage-2 input"):
        _ = case.stage2
