"""Stage 1 for one case, the one way: a case in, a :class:`~livercad.types.Stage1Case` out.

Prediction (:class:`~livercad.pipeline.predict.predictor.Predictor`), stage-2 training's cache
(:func:`~livercad.pipeline.training.orchestrate.stage1_cache`, which the ablation study reuses) and
:func:`evaluate_segmenter` take the same two steps:

1. :func:`open_case` reads the image (NIfTI, DICOM series, PNG/JPEG:
   :func:`~livercad.pipeline.predict.case_io.load_case_volume`; with a multi-phase segmenter also the case's
   further images, :mod:`livercad.io.channels`), decides its modality (the case's own: the
   DICOM Modality tag, else the manifest column; else the run's, which for a training cohort is
   ``preprocess.modality``; else the intensity rule), refuses a family the segmenter was not trained on, and
   reads the reference mask with the label values of :func:`~livercad.segment.data.row_liver_labels`
   (config ``data.liver_labels`` when set, else the row's ``liver_labels`` column, else every value > 0).
2. :func:`run_stage1` segments the volume, scores the mask against the reference on the input's own grid and
   builds the stage-2 input (:func:`case_slices`), where the reference goes to model space the one way every
   ground-truth mask does: :func:`~livercad.segment.data.model_space_mask` (bilinear, threshold 0.5).

The mask comes from a source, today a trained :class:`~livercad.segment.infer.Segmenter`; everything after
its :class:`~livercad.segment.infer.SegmentOutput` (scores, :func:`case_slices`) is source-independent, so a
second source (a mask from another tool) only has to produce a ``SegmentOutput`` for the same
:class:`Stage1Input` to yield the same :class:`~livercad.types.Stage1Case`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from livercad.config import PostprocessConfig
from livercad.errors import InputError
from livercad.io.manifest import ManifestRow
from livercad.types import CaseSlices, SegmentationEvaluation, Stage1Case, Volume

if TYPE_CHECKING:
    from livercad.io.external_masks import ExternalMasks
    from livercad.pipeline.predict.inputs import CaseInput
    from livercad.segment.infer import Segmenter, SegmentOutput

log = logging.getLogger(__name__)

#: How a refusal names where the modality came from.
SOURCE_TEXT = {"case": "the case's record", "run": "the run's --modality", "intensity-rule": "the intensity rule"}
#: The per-case metrics :func:`evaluate_segmenter` summarises.
METRICS = ("dice", "iou", "hd95_mm", "msd_mm", "volume_ml", "ref_volume_ml", "volume_error_ml", "volume_error_rel")


@dataclass(frozen=True)
class Stage1Input:
    """A case opened for stage 1 (:func:`open_case`).

    Attributes:
        row: the case's record.
        volume: its image.
        modality: its modality family (``ct`` | ``mr`` | ``us``).
        reference: the bool reference liver mask on ``volume``'s grid, or ``None``.
    """

    row: ManifestRow
    volume: Volume
    modality: str
    reference: np.ndarray | None = None


@dataclass(frozen=True)
class Stage1Options:
    """How stage 1 runs.

    Attributes:
        batch_size: slices per forward pass.
        postprocess: post-processing; ``None``: the one recorded in the segmenter's checkpoint.
        coarse_to_fine: skip slices far from the liver (:func:`~livercad.segment.infer.segment_prepared`).
        classes: the class list a case's label is indexed in (:attr:`~livercad.types.CaseSlices.label`).
        keep_mask: keep the mask on the input's own grid in :attr:`~livercad.types.Stage1Case.mask`
            (prediction writes it; a stage-1 cache keeps model space only).
        masks: another tool's masks (:class:`~livercad.io.external_masks.ExternalMasks`); with ``source``
            ``segmenter`` they are kept beside the segmenter's (``CaseSlices.external``, the ablation's
            ``external-mask`` arm), with ``external`` they replace it.
        source: ``segmenter`` or ``external`` (the mask comes from ``masks``; nothing is segmented).
        attenuation: compute ``CaseSlices.attenuation`` (CT: liver HU per mask, for the ablation's rule arms);
            prediction does not need it and computes its own intensity statistics.
        slices: build the stage-2 input (:func:`case_slices`, and the model-space mask it needs); ``False``
            where nothing classifies (prediction with a segmentation-only bundle, such as the shipped model):
            :attr:`~livercad.types.Stage1Case.slices` is then ``None`` and the mask is the same.
    """

    batch_size: int = 4
    postprocess: PostprocessConfig | None = None
    coarse_to_fine: bool = False
    classes: tuple[str, ...] = ()
    keep_mask: bool = True
    masks: ExternalMasks | None = None
    source: str = "segmenter"
    attenuation: bool = True
    slices: bool = True


def open_case(case: CaseInput, *, trained: Sequence[str] | None = None, liver_labels: Sequence[int] | None = None,
              known: dict[str, Any] | None = None, images: Sequence[str] = ("image",)) -> Stage1Input:
    """Read a case's image, decide its modality and read its reference mask (see the module docstring).

    Args:
        case: the case (a manifest row becomes one with :func:`~livercad.pipeline.predict.inputs.case_from_row`).
        trained: the modality families the mask source was trained on; another family is refused.
        liver_labels: the config's ``data.liver_labels`` (wins over the row's ``liver_labels`` column).
        known: filled as the case opens, with what a prediction record keeps of its image file
            (:func:`~livercad.pipeline.predict.case_io.case_fields`), then ``modality`` and ``modality_source``,
            so the record of a case failing later still has them.
        images: the co-registered images the segmenter takes (:attr:`~livercad.segment.infer.Segmenter.images`);
            the others than ``image`` become the volume's channels (:mod:`livercad.io.channels`).

    Raises:
        InputError: naming the image: unreadable, a modality that is contradictory, missing for a 2-D image
            or not trained on, an unusable reference mask; a missing image of ``images`` or one off the grid.
    """
    from livercad.pipeline.predict.case_io import case_fields, load_case_volume, load_reference
    from livercad.segment.data import row_liver_labels

    facts = {} if known is None else known
    volume = load_case_volume(case, images)
    facts.update(case_fields(case, volume))
    modality = _modality(case, volume, trained, facts)
    reference = load_reference(case, volume, row_liver_labels(case.row, liver_labels))
    return Stage1Input(case.row, volume, modality, reference)


def _modality(case: CaseInput, volume: Volume, trained: Sequence[str] | None, facts: dict[str, Any]) -> str:
    """The case's modality family (recorded in ``facts``); refused when not among ``trained``."""
    from livercad.modality import check_trained_for, resolve
    from livercad.pipeline.predict.case_io import record_modality

    own, where = record_modality(case, volume)
    try:
        modality, source = resolve(own, case.run_modality, volume.data)
    except InputError as exc:
        raise InputError(case.row.image, exc.reason) from None
    facts.update(modality=modality, modality_source=source)
    if trained is not None:
        try:
            check_trained_for(modality, list(trained), "the segmenter")
        except InputError as exc:
            raise InputError(case.row.image, f"{exc.reason} (modality from {where or SOURCE_TEXT[source]})") from None
    return modality


def run_stage1(segmenter: Segmenter, case: Stage1Input, options: Stage1Options | None = None, *,
               after_model: Callable[[], None] | None = None) -> Stage1Case:
    """Stage 1 of one opened case: segment, score against the reference, build the stage-2 input.

    The mask is thresholded chunk-wise without a full-resolution probability map
    (:func:`~livercad.segment.infer.segment_volume` with ``keep_prob=False``: the same mask). The scores are
    :func:`~livercad.pipeline.predict.case_stats.segmentation_scores` on the input's own grid.
    ``after_model``: called once the segmenter's network has run (not with external masks), before
    post-processing: :func:`~livercad.segment.infer.segment_volume`'s hook.

    Raises:
        InputError: the segmenter was not trained on the case's modality family.
    """
    from livercad.pipeline.predict.case_stats import segmentation_scores
    from livercad.segment.infer import segment_volume

    opts = options or Stage1Options()
    found = opts.masks.structures(str(case.row.case_id), case.volume) if opts.masks is not None else {}
    external, spleen = found.get("liver"), found.get("spleen")
    out: SegmentOutput | None = None
    if opts.source == "external":
        if external is None:
            raise InputError(case.row.image, "stage-1 source 'external' without external masks")
        mask = np.asarray(external).astype(np.uint8)
        if opts.slices:  # model space only for stage 2: without it the image is not even prepared
            out = external_output(segmenter, case, mask)
    else:
        out = segment_volume(segmenter, case.volume, batch_size=opts.batch_size, postprocess=opts.postprocess,
                             coarse_to_fine=opts.coarse_to_fine, keep_prob=False, modality=case.modality,
                             model_mask=opts.slices, after_model=after_model)
        mask = out.segmentation.mask
    spacing_known = bool(getattr(case.volume.header, "spacing_known", True))
    scores = segmentation_scores(mask, case.reference, case.volume.spacing, spacing_known=spacing_known)
    own = opts.source == "external"  # then the mask is the external one: its HU is measured once
    att = attenuation(case, mask, None if own else external, spleen) if opts.attenuation else {}
    if own and "mask" in att:
        att["external-mask"] = att["mask"]
    slices = case_slices(case.row, out, classes=opts.classes, reference=case.reference, external=external,
                         attenuation=att, images=segmenter.images) if opts.slices and out is not None else None
    source = "segmenter" if opts.source != "external" or opts.masks is None else opts.masks.tool
    return Stage1Case(case.row, slices, scores, case.modality, mask if opts.keep_mask else None, source, spleen)


def external_output(segmenter: Segmenter, case: Stage1Input, mask: np.ndarray) -> SegmentOutput:
    """Another tool's mask as a stage-1 output, in place of a segmentation (built for stage 2's input only).

    The image is prepared as the segmenter's preprocessing does (what stage 2 was trained on; the family is
    not checked, since this network segments nothing here), the mask goes to model space the one way
    (:func:`~livercad.segment.data.model_space_mask`) and stands for the probability too.
    """
    from livercad.segment.data import model_space_mask
    from livercad.segment.infer import SegmentOutput
    from livercad.types import Segmentation

    t0 = time.perf_counter()
    prepared = segmenter.prepare(case.volume, case.modality, check=False)
    t1 = time.perf_counter()
    mask_u8 = np.asarray(mask).astype(np.uint8, copy=False)
    mask_model = model_space_mask(prepared, mask_u8)
    seconds = {"preprocess": t1 - t0, "model": 0.0, "postprocess": time.perf_counter() - t1}
    return SegmentOutput(prepared, mask_model.float(), mask_model, Segmentation(prob=None, mask=mask_u8), seconds)


def attenuation(case: Stage1Input, mask: np.ndarray, external: np.ndarray | None,
                spleen: np.ndarray | None) -> dict[str, float]:
    """CT only: mean HU inside each available liver mask (and the spleen) eroded by 2 voxels.

    Keys are the regions the masks stand for (``mask``, ``oracle-mask``, ``external-mask``) and ``spleen``;
    a mask that leaves nothing after erosion is left out. Empty for MR and ultrasound.
    """
    from livercad.pipeline.predict.case_stats import liver_intensity

    if case.modality != "ct":
        return {}
    masks = {"mask": mask, "oracle-mask": case.reference, "external-mask": external, "spleen": spleen}
    out = {}
    for key, m in masks.items():
        if m is not None:
            mean = liver_intensity(case.volume.data, m, "ct")["liver_mean"]
            if mean is not None:
                out[key] = float(mean)
    return out


def case_slices(row: ManifestRow, out: SegmentOutput, *, classes: Sequence[str] = (),
                reference: np.ndarray | None = None, external: np.ndarray | None = None,
                attenuation: dict[str, float] | None = None, images: Sequence[str] = ("image",)) -> CaseSlices:
    """The stage-2 input of one case from its stage-1 output.

    Args:
        row: the case's record: ``case_id``; ``patient_id`` (the case id when empty); ``label``, kept as
            ``label_name`` and indexed in ``classes`` (``label`` ``None`` when it is not one of them).
        out: the stage-1 output (model-space slices, probability and mask; the mask on the input's grid).
        classes: the class list.
        reference: the reference mask on the input's own grid, brought to model space by
            :func:`~livercad.segment.data.model_space_mask`, as the predicted mask is.
        external: another tool's liver mask on the input's own grid (to model space the same way).
        attenuation: the case's liver (and spleen) HU per mask (:func:`attenuation`).
        images: the names of the images stacked in the prepared slices (``(Z, n, S, S)`` for ``n > 1``).

    Raises:
        InputError: the stage-1 maps do not match the slices, or the reference does not match the input grid.
    """
    from livercad.segment.data import model_space_mask

    case_id = str(row.case_id)
    image = torch.as_tensor(out.prepared.image).to(torch.float16)
    prob = torch.as_tensor(np.asarray(out.prob_model)).to(torch.float16)
    mask = (torch.as_tensor(np.asarray(out.mask_model)) > 0).to(torch.uint8)
    grid = (image.shape[0], *image.shape[-2:])
    if prob.shape != grid or mask.shape != grid or (image.shape[1] if image.ndim == 4 else 1) != len(images):
        raise InputError(None, f"case '{case_id}': stage-1 maps {tuple(prob.shape)}/{tuple(mask.shape)} do not "
                               f"match the slices {tuple(image.shape)} of the images {', '.join(images)}")
    gt = None
    if reference is not None:
        grid = tuple(out.segmentation.mask.shape)
        if tuple(reference.shape) != grid:
            raise InputError(None, f"case '{case_id}': reference mask shape {tuple(reference.shape)} differs from "
                                   f"the input grid {grid}")
        gt = model_space_mask(out.prepared, reference)
    ext = model_space_mask(out.prepared, external) if external is not None else None
    label = list(classes).index(row.label) if row.label in classes else None
    return CaseSlices(case_id, str(row.patient_id or case_id), label, image, prob, mask, gt,
                      tuple(out.prepared.spacing), row.label, ext, dict(attenuation or {}), tuple(images))


def evaluate_segmenter(seg: Segmenter, rows: Sequence[ManifestRow], *, batch_size: int = 4,
                       liver_labels: Sequence[int] | None = None, postprocess: PostprocessConfig | None = None,
                       channels_axis: bool = False) -> SegmentationEvaluation:
    """Per-case metrics on the ORIGINAL grid against each row's ground-truth mask, and a cohort summary.

    Each row runs stage 1 (:func:`open_case`, :func:`run_stage1`); its modality is its own, else the one the
    segmenter was trained with first; its images are the segmenter's (``channels_axis``: a 4-D NIfTI holds
    them). Rows without a mask are skipped.

    Returns:
        The per-case metrics and their cohort summary over :data:`METRICS` (:class:`SegmentationEvaluation`).
    """
    from livercad.metrics.segmentation import summarize
    from livercad.pipeline.predict.inputs import case_from_row

    options = Stage1Options(batch_size=batch_size, postprocess=postprocess, keep_mask=False)
    per_case: list[dict[str, Any]] = []
    for row in rows:
        if row.mask is None:
            log.info("case %s has no mask; skipped in evaluation", row.case_id)
            continue
        t0 = time.perf_counter()
        case = case_from_row(row, run_modality=seg.preprocessing["modality"], channels_axis=channels_axis)
        opened = open_case(case, trained=seg.modalities, liver_labels=liver_labels, images=seg.images)
        s1 = run_stage1(seg, opened, options)
        per_case.append({"case_id": str(row.case_id), **s1.seg_metrics, "seconds": time.perf_counter() - t0})
    summary = {k: summarize([c.get(k, float("nan")) for c in per_case]) for k in METRICS}
    return SegmentationEvaluation(per_case, summary)


__all__ = ["METRICS", "SOURCE_TEXT", "Stage1Input", "Stage1Options", "attenuation", "case_slices",
           "evaluate_segmenter", "external_output", "open_case", "run_stage1"]
