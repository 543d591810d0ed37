"""Per-case work of a prediction run: the models load once, then each case flows one way.

load the image (NIfTI, DICOM series, PNG/JPEG: :mod:`livercad.pipeline.predict.case_io`) -> modality -> preprocess ->
segment -> save masks (NIfTI and/or DICOM-SEG) -> liver statistics (:mod:`livercad.pipeline.predict.case_stats`) ->
regions/classify (when the bundle has a classifier) -> metrics -> QC -> record.

A case's modality comes from its record (the DICOM Modality tag, else the manifest column), else the run's
``--modality``, else the intensity rule (:func:`livercad.modality.resolve`; refused for 2-D image files, whose
grey values it would misread); a modality family the segmenter was not trained on fails the case.
The verdict is flagged ``out-of-domain`` when the classifier was trained on the phantom only and the
image is not from the phantom (:func:`verdict_status`).
Any :class:`~livercad.errors.LivercadError` (or a decoding error of a broken file) fails only its case;
the message becomes the case's one-line reason in failures.csv.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from livercad.config import InferenceConfig
from livercad.errors import InputError, LivercadError
from livercad.pipeline.bundle import Bundle
from livercad.pipeline.predict.case_io import (
    case_fields,
    input_format,
    load_case_volume,
    load_reference,
    record_modality,
    write_masks,
)
from livercad.pipeline.predict.case_stats import liver_intensity, liver_size, segmentation_scores, size_text
from livercad.pipeline.predict.inputs import CaseInput
from livercad.pipeline.predict.outputs import RunFolder
from livercad.runtime.backend import release_torch_weights
from livercad.types import CaseResult

log = logging.getLogger(__name__)

SOURCE_TEXT = {"case": "the case's record", "run": "the run's --modality", "intensity-rule": "the intensity rule"}


def one_line(exc: BaseException) -> str:
    """A one-line reason for an exception (type name kept for unexpected errors)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, LivercadError) else f"{type(exc).__name__}: {text}"


def verdict_status(classifier_domain: str | None, image_domain: str) -> str:
    """``no-classifier`` | ``out-of-domain`` | ``ok`` for one case.

    ``out-of-domain``: the classifier was trained on the synthetic phantom only and the image is not from
    it; its label and probabilities are still written, flagged, as they are not validated on real scans.

    Example:
        >>> verdict_status(None, "real"), verdict_status("phantom", "real"), verdict_status("phantom", "phantom")
        ('no-classifier', 'out-of-domain', 'ok')
    """
    if classifier_domain is None:
        return "no-classifier"
    if classifier_domain == "phantom" and image_domain != "phantom":
        return "out-of-domain"
    return "ok"


class Predictor:
    """The stages of a bundle, loaded once, applied case by case.

    A stage that runs on ONNX Runtime has its torch weights released after loading
    (:func:`livercad.runtime.backend.release_torch_weights`, ~100 MB each): load the checkpoint again for torch work
    such as saliency maps. A segmentation-only bundle has no classifier (``classifier`` is ``None``).

    Args:
        bundle: a verified model bundle.
        inference: precision, backend, channels-last, slice batch size, QC images on/off.
    """

    def __init__(self, bundle: Bundle, inference: InferenceConfig) -> None:
        from livercad.classify.infer import Classifier
        from livercad.segment.infer import Segmenter

        self.bundle = bundle
        self.inference = inference
        opts = {"precision": inference.precision, "backend": inference.backend,
                "channels_last": inference.channels_last}
        self.segmenter = Segmenter.load(bundle.segmenter_path, **opts)
        clf_path = bundle.classifier_path
        self.classifier = Classifier.load(clf_path, **opts) if clf_path is not None else None
        self.classes = bundle.classes
        self.domain = bundle.domain
        release_torch_weights(self.segmenter, self.classifier)  # stages on ONNX Runtime never call torch

    @property
    def precision(self) -> str:
        """The precision actually used (``auto`` resolved)."""
        return str(getattr(self.segmenter, "precision", self.inference.precision))

    @property
    def backends(self) -> dict[str, str | None]:
        """The backend each stage actually runs on (``auto`` resolved), e.g. ``{"segmenter": "onnx", ...}``."""
        return {"requested": self.inference.backend, "segmenter": self.segmenter.backend,
                "classifier": self.classifier.backend if self.classifier is not None else None}

    @property
    def used(self) -> dict[str, Any]:
        """What run records keep: precision, ``backend`` {requested, segmenter, classifier}, ``modalities``."""
        return {"precision": self.precision, "backend": self.backends, "modalities": self.segmenter.modalities}

    @property
    def backend(self) -> str:
        """One word for run records: the common backend of the stages, or ``mixed``."""
        used = {b for k, b in self.backends.items() if k != "requested" and b is not None}
        return used.pop() if len(used) == 1 else "mixed"

    def process(self, case: CaseInput, folder: RunFolder) -> CaseResult:
        """Run one case; never raises for a bad case, returns a failed CaseResult instead."""
        t0 = time.perf_counter()
        known: dict[str, Any] = {"image_domain": case.image_domain, "input_format": input_format(case)}
        try:
            result = self._process(case, folder, known)
        except (LivercadError, OSError, ValueError, EOFError, MemoryError) as exc:
            log.warning("case %s failed: %s", case.case_id, one_line(exc))
            result = CaseResult(case.case_id, str(case.image), true_label=case.label, patient_id=case.patient_id,
                                error=one_line(exc), **known)
        return CaseResult(**{**result.__dict__, "seconds": round(time.perf_counter() - t0, 3)})

    def _process(self, case: CaseInput, folder: RunFolder, known: dict[str, Any]) -> CaseResult:
        """One case's flow (module docstring); ``known`` collects what a failed record keeps."""
        from livercad.segment.infer import segment_volume

        volume = load_case_volume(case)
        known.update(case_fields(case, volume))
        modality = self._modality(case, volume, known)
        gt = load_reference(case, volume)
        out = segment_volume(self.segmenter, volume, batch_size=self.inference.batch_size,
                             postprocess=self.bundle.config.segment.postprocess,
                             coarse_to_fine=self.inference.coarse_to_fine, keep_prob=False, modality=modality)
        mask = out.segmentation.mask
        files = write_masks(mask, volume, case, folder)
        spacing_known = bool(known["spacing_known"])
        seg_metrics = segmentation_scores(mask, gt, volume.spacing, spacing_known=spacing_known)
        sizes = liver_size(mask, volume, spacing_known=spacing_known, has_thickness=case.kind != "image2d")
        probs, label, status = self._classify(case, out, gt)
        if self.inference.qc_images:
            title = _qc_title(case.case_id, label, probs, status, size_text(sizes))
            self._write_qc(volume, out, mask, gt, title, modality, folder.qc_path(case.case_id))
        return CaseResult(
            case_id=case.case_id, input_path=str(case.image), probabilities=probs, predicted_label=label,
            true_label=case.label, patient_id=case.patient_id, dice=seg_metrics.get("dice"),
            segmentation_metrics=seg_metrics, verdict_status=status, **files, **sizes, **known,
            **liver_intensity(volume.data, mask, modality),
        )

    def _modality(self, case: CaseInput, volume: Any, known: dict[str, Any]) -> str:
        """The case's modality family (recorded in ``known``); refused when the segmenter was not trained on it."""
        from livercad.modality import check_trained_for, resolve

        own, where = record_modality(case, volume)
        try:
            modality, source = resolve(own, case.run_modality, volume.data)
        except InputError as exc:
            raise InputError(case.image, exc.reason) from None
        known.update(modality=modality, modality_source=source)
        try:
            check_trained_for(modality, self.segmenter.modalities, "the segmenter")
        except InputError as exc:
            raise InputError(case.image, f"{exc.reason} (modality from {where or SOURCE_TEXT[source]})") from None
        return modality

    def _classify(self, case: CaseInput, out: Any, gt: np.ndarray | None
                  ) -> tuple[dict[str, float], str | None, str]:
        """(probabilities, label, verdict status); empty and ``None`` without a classifier."""
        status = verdict_status(self.domain.get("classify") if self.classifier is not None else None,
                                case.image_domain)
        if self.classifier is None:
            return {}, None, status
        from livercad.classify.data import case_slices_from_segment
        from livercad.classify.infer import predict_case

        gt_model = out.prepared.from_original(gt.astype(np.uint8)) if gt is not None else None
        cs = case_slices_from_segment(out, case.case_id, case.patient_id or case.case_id, None, gt=gt_model)
        proba = np.asarray(predict_case(self.classifier, cs, batch_size=max(8, self.inference.batch_size)))
        probs = {c: float(p) for c, p in zip(self.classes, proba, strict=True)}
        return probs, self.classes[int(np.argmax(proba))], status

    @staticmethod
    def _write_qc(volume: Any, out: Any, mask: np.ndarray, gt: np.ndarray | None, title: str, modality: str,
                  path: Path) -> None:
        import nibabel as nib

        from livercad.io.atomic import atomic_write_bytes
        from livercad.report.overlay import qc_png

        ornt = out.prepared.ornt
        canon = nib.orientations.apply_orientation(volume.data, ornt)
        cmask = nib.orientations.apply_orientation(mask, ornt)
        cref = nib.orientations.apply_orientation(gt, ornt) if gt is not None else None
        png = qc_png(canon, cmask, title=title, ref_canonical=cref, modality=modality)
        atomic_write_bytes(path, png)


def _qc_title(case_id: str, label: str | None, probs: dict[str, float], status: str, size: str) -> str:
    """The QC image's title: the verdict (flagged when out-of-domain), or the liver size without a classifier."""
    if label is None:
        return f"{case_id}: {size} (no classifier)"
    text = f"{case_id}: {label} (p={max(probs.values()):.2f})"
    return f"{text} [out-of-domain]" if status == "out-of-domain" else text


__all__ = ["Predictor", "one_line", "verdict_status"]
