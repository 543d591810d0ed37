"""Typed values passed between the stages (frozen dataclasses, no logic).

The stage-1 -> stage-2 contract: stage 1 (:func:`livercad.pipeline.stage1.run_stage1`) turns one case into a
:class:`Stage1Case`, whose :class:`CaseSlices` is all stage 2 (:mod:`livercad.classify`) reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from livercad.io.manifest import ManifestRow


@dataclass(frozen=True)
class Volume:
    """An image as read from disk, with its geometry.

    Attributes:
        data: float32 voxels, always 3-D ``(I, J, K)`` in the file's own voxel order
            (a 2-D file becomes ``(I, J, 1)``; a 4-D file with a trailing 1 is squeezed).
        affine: 4x4 float64 voxel->world (RAS mm) matrix of the file (the sform or qform nibabel picks).
        header: the original nibabel header (NIfTI-1 or NIfTI-2), used to write results back; a
            :class:`~livercad.io.dicom_meta.DicomRecord` for DICOM input, an
            :class:`~livercad.io.image2d.Image2DRecord` for PNG/JPEG input.
        spacing: voxel size in mm along I, J, K.
        path: the file it came from (``None`` for in-memory volumes).
        original_shape: the data shape as stored in the file (what a saved mask must have).
        channels: the case's further co-registered images on this very grid (float32, ``data``'s shape), the
            input channels after ``data`` in the order the model takes them (``image_<phase>`` manifest
            columns or the 4th axis of a 4-D NIfTI: :mod:`livercad.io.channels`); empty for one image.
    """

    data: np.ndarray
    affine: np.ndarray
    header: Any
    spacing: tuple[float, float, float]
    path: Path | None = None
    original_shape: tuple[int, ...] = ()
    channels: tuple[np.ndarray, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        """The 3-D shape of :attr:`data`."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0


@dataclass(frozen=True)
class Segmentation:
    """Stage-1 output for one volume, on the volume's original voxel grid.

    Attributes:
        prob: float32 liver probability, same shape as ``Volume.data``; ``None`` when not asked for
            (``segment_volume(..., keep_prob=False)``, the prediction path, which never uses it).
        mask: uint8 binary mask after post-processing, same shape as ``Volume.data``.
    """

    prob: np.ndarray | None
    mask: np.ndarray


@dataclass(frozen=True)
class CaseSlices:
    """One case in model space, as stage 2 needs it (built by stage 1, read by :mod:`livercad.classify`).

    Attributes:
        case_id, patient_id: identifiers (bootstrap CIs resample by patient).
        label: class index into the class list it was built with, or ``None`` (unlabelled / not a class).
        image: ``(Z, S, S)`` float16/32 normalised canonical slices; ``(Z, n, S, S)`` for a case of ``n``
            co-registered images (``images``).
        prob: ``(Z, S, S)`` float16 predicted liver probability.
        mask: ``(Z, S, S)`` uint8 predicted (post-processed) mask.
        gt: ``(Z, S, S)`` uint8 ground-truth mask or ``None`` (brought to model space the one way,
            :func:`livercad.segment.data.model_space_mask`, as the predicted ``mask`` is).
        spacing: canonical voxel size (mm).
        label_name: the raw label string when known; training maps it onto ``cfg.classes`` (so one cache
            serves several tasks), falling back to ``label`` when it is ``None``.
        external: ``(Z, S, S)`` uint8 liver mask of another tool (:mod:`livercad.io.external_masks`) or ``None``;
            brought to model space as ``gt`` is (the ablation's ``external-mask`` arm).
        attenuation: CT only: mean HU inside each liver mask eroded by 2 voxels, on the input's own grid, keyed
            by the region whose mask it is (``mask``, ``oracle-mask``, ``external-mask``), and ``spleen`` when
            another tool's spleen mask is there (the attenuation-rule arms).
        images: the names (manifest columns) of the images stacked in ``image``, in order (stage 2 records them
            and refuses a case whose images differ).
    """

    case_id: str
    patient_id: str
    label: int | None
    image: torch.Tensor
    prob: torch.Tensor
    mask: torch.Tensor
    gt: torch.Tensor | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    label_name: str | None = None
    external: torch.Tensor | None = None
    attenuation: dict[str, float] = field(default_factory=dict)
    images: tuple[str, ...] = ("image",)


@dataclass(frozen=True)
class Stage1Case:
    """One case after stage 1: what stage 2 trains or predicts on, and how the segmentation scored.

    Attributes:
        row: the case's record (identity, label, split, extra manifest columns).
        slices: the stage-2 input in model space; ``None`` when stage 1 ran without it
            (``Stage1Options(slices=False)``: nothing classifies the case).
        seg_metrics: the predicted mask against the reference mask on the input's own grid (empty without
            one); metrics in mm / mL are left out when the image gives no pixel spacing.
        modality: the modality family the case was segmented as (``ct`` | ``mr`` | ``us``).
        mask: the post-processed uint8 mask on the input's own grid; ``None`` where it was not kept (a stage-1
            cache keeps model space only: ``Stage1Options(keep_mask=False)``).
        source: where the mask came from: ``segmenter`` or the external tool's name.
        spleen: another tool's spleen mask on the input's own grid (bool), when its output has one.
    """

    row: ManifestRow
    slices: CaseSlices | None
    seg_metrics: dict[str, float]
    modality: str
    mask: np.ndarray | None = None
    source: str = "segmenter"
    spleen: np.ndarray | None = None

    @property
    def stage2(self) -> CaseSlices:
        """:attr:`slices`, for code that trains or evaluates stage 2 on a stage-1 cache (which always builds it).

        Raises:
            ValueError: stage 1 ran without the stage-2 input (``Stage1Options(slices=False)``), naming the case.
        """
        if self.slices is None:
            raise ValueError(f"case {self.row.case_id}: stage 1 ran without the stage-2 input "
                             "(Stage1Options(slices=False)); stage 2 cannot use it")
        return self.slices


@dataclass(frozen=True)
class SegmentationEvaluation:
    """A segmenter scored on a cohort (:func:`livercad.pipeline.stage1.evaluate_segmenter`).

    Attributes:
        per_case: one dict per case with a reference mask: ``case_id``, the metrics of
            :func:`~livercad.metrics.segmentation.segmentation_metrics` and ``seconds``.
        summary: each of :data:`livercad.pipeline.stage1.METRICS` -> its
            :func:`~livercad.metrics.segmentation.summarize` (mean, median, SD, bootstrap 95 % CI).
    """

    per_case: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]


@dataclass(frozen=True)
class CaseResult:
    """One case's record in a pipeline run.

    Attributes:
        case_id, input_path, mask_path, patient_id, true_label: identity and files of the case (``mask_path``,
            the NIfTI mask, is ``None`` with ``output_format="dicom-seg"`` on DICOM input).
        liver_volume_ml: volume of the predicted liver mask; ``None`` when the spacing is unknown, and for
            PNG/JPEG (no slice thickness).
        probabilities, predicted_label: the classifier's verdict (empty/``None`` without a classifier).
        verdict_status: ``ok`` | ``out-of-domain`` (classifier trained on the phantom only, image not from the
            phantom: label and probabilities are kept but flagged) | ``no-classifier``.
        modality, modality_source: the case's modality family (``ct`` | ``mr`` | ``us``) and where it came
            from (``case``: its DICOM Modality tag or manifest column | ``run`` | ``intensity-rule``).
        image_domain: ``phantom`` (input from a phantom cohort) or ``real``.
        input_format: ``nifti`` | ``dicom`` | ``png`` | ``jpeg``.
        series_description, contrast_phase: the DICOM SeriesDescription and the contrast phase (the manifest's
            ``contrast_phase``/``phase`` column, else read from the DICOM series); ``None`` for NIfTI without them.
        spacing_known: ``False`` when the image gives no pixel spacing (2-D images without ``spacing=``): sizes
            in mm, mL or cm² are then not reported.
        liver_area_cm2: liver area of a 2-D (single-slice) image.
        seg_path: the DICOM-SEG written for the case (``output_format`` ``dicom-seg`` or ``both``, DICOM input).
        note: a remark that is not a failure (e.g. ``dicom-seg needs DICOM input``).
        image_record: what the input file says about itself (DICOM UIDs, series number, spacing source ...).
        liver_mean, liver_median, liver_sd, intensity_unit: image intensity inside the liver mask eroded by
            2 voxels (``HU`` for CT, ``au`` otherwise); ``None`` when nothing is left after erosion.
        dice, segmentation_metrics: against the reference mask, when given.
        mask_source: ``segmenter`` (livercad's stage 1) or the tool whose masks were given (``--masks``).
        spleen_volume_ml, spleen_mean, liver_minus_spleen: with another tool's multi-label output holding a
            spleen: its volume, its mean intensity inside the spleen eroded by 2 voxels, and liver − spleen.
        error: one-line reason when the case failed; seconds: wall time of the case.
    """

    case_id: str
    input_path: str
    mask_path: str | None = None
    liver_volume_ml: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    predicted_label: str | None = None
    true_label: str | None = None
    patient_id: str | None = None
    dice: float | None = None
    segmentation_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    verdict_status: str | None = None
    modality: str | None = None
    modality_source: str | None = None
    image_domain: str | None = None
    liver_mean: float | None = None
    liver_median: float | None = None
    liver_sd: float | None = None
    intensity_unit: str | None = None
    input_format: str | None = None
    series_description: str | None = None
    contrast_phase: str | None = None
    spacing_known: bool | None = None
    liver_area_cm2: float | None = None
    seg_path: str | None = None
    note: str | None = None
    image_record: dict[str, Any] = field(default_factory=dict)
    mask_source: str | None = None
    spleen_volume_ml: float | None = None
    spleen_mean: float | None = None
    liver_minus_spleen: float | None = None

    @property
    def ok(self) -> bool:
        """True when the case finished without error."""
        return self.error is None
