"""Per-case work of a prediction run: the models load once, then each case flows one way.

io.load_volume -> preprocess -> segment -> save mask -> regions/classify -> metrics -> QC -> record.
Any :class:`~livercad.errors.LivercadError` (or a decoding error of a broken file) fails only its case;
the message becomes the case's one-line reason in failures.csv.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from livercad.backend import release_torch_weights
from livercad.config import InferenceConfig
from livercad.errors import LivercadError
from livercad.pipeline.bundle import Bundle
from livercad.pipeline.inputs import CaseInput
from livercad.pipeline.outputs import RunFolder
from livercad.types import CaseResult

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """A one-line reason for an exception (type name kept for unexpected errors)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, LivercadError) else f"{type(exc).__name__}: {text}"


class Predictor:
    """Both stages of a bundle, loaded once, applied case by case.

    A stage that runs on ONNX Runtime has its torch weights released after loading
    (:func:`livercad.backend.release_torch_weights`, ~100 MB each): load the checkpoint again for torch work
    such as saliency maps.

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
        self.classifier = Classifier.load(bundle.classifier_path, **opts)
        self.classes = bundle.classes
        release_torch_weights(self.segmenter, self.classifier)  # stages on ONNX Runtime never call torch

    @property
    def precision(self) -> str:
        """The precision actually used (``auto`` resolved)."""
        return str(getattr(self.segmenter, "precision", self.inference.precision))

    @property
    def backends(self) -> dict[str, str]:
        """The backend each stage actually runs on (``auto`` resolved), e.g. ``{"segmenter": "onnx", ...}``."""
        return {"requested": self.inference.backend, "segmenter": self.segmenter.backend,
                "classifier": self.classifier.backend}

    @property
    def used(self) -> dict[str, Any]:
        """What run records keep: ``{"precision": ..., "backend": {requested, segmenter, classifier}}``."""
        return {"precision": self.precision, "backend": self.backends}

    @property
    def backend(self) -> str:
        """One word for run records: the common backend of both stages, or ``mixed``."""
        used = {self.segmenter.backend, self.classifier.backend}
        return used.pop() if len(used) == 1 else "mixed"

    def process(self, case: CaseInput, folder: RunFolder) -> CaseResult:
        """Run one case; never raises for a bad case, returns a failed CaseResult instead."""
        t0 = time.perf_counter()
        try:
            result = self._process(case, folder)
        except (LivercadError, OSError, ValueError, EOFError, MemoryError) as exc:
            log.warning("case %s failed: %s", case.case_id, one_line(exc))
            result = CaseResult(case.case_id, str(case.image), true_label=case.label, error=one_line(exc))
        return CaseResult(**{**result.__dict__, "seconds": round(time.perf_counter() - t0, 3)})

    def _process(self, case: CaseInput, folder: RunFolder) -> CaseResult:
        from livercad.classify.data import case_slices_from_segment
        from livercad.classify.infer import predict_case
        from livercad.io.nifti import load_mask, load_volume, save_mask
        from livercad.segment.infer import segment_volume

        volume = load_volume(case.image)
        gt = None
        if case.mask is not None:
            gt = load_mask(case.mask, volume, liver_labels=case.liver_labels)
        out = segment_volume(self.segmenter, volume, batch_size=self.inference.batch_size,
                             postprocess=self.bundle.config.segment.postprocess,
                             coarse_to_fine=self.inference.coarse_to_fine, keep_prob=False)
        mask = out.segmentation.mask
        mask_path = save_mask(mask, volume, folder.mask_path(case.case_id))
        seg_metrics = self._seg_metrics(mask, gt, volume.spacing)
        gt_model = out.prepared.from_original(gt.astype(np.uint8)) if gt is not None else None
        cs = case_slices_from_segment(out, case.case_id, case.patient_id or case.case_id, None, gt=gt_model)
        proba = np.asarray(predict_case(self.classifier, cs, batch_size=max(8, self.inference.batch_size)))
        probs = {c: float(p) for c, p in zip(self.classes, proba, strict=True)}
        label = self.classes[int(np.argmax(proba))]
        if self.inference.qc_images:
            self._write_qc(volume, out, mask, gt, case.case_id, label, float(proba.max()), folder)
        return CaseResult(
            case_id=case.case_id, input_path=str(case.image), mask_path=str(Path(mask_path)),
            liver_volume_ml=float(mask.sum()) * volume.voxel_volume_ml, probabilities=probs,
            predicted_label=label, true_label=case.label, patient_id=case.patient_id, dice=seg_metrics.get("dice"),
            segmentation_metrics=seg_metrics,
        )

    @staticmethod
    def _seg_metrics(mask: np.ndarray, gt: np.ndarray | None, spacing: Any) -> dict[str, float]:
        if gt is None:
            return {}
        from livercad.metrics.segmentation import segmentation_metrics

        return {k: float(v) for k, v in segmentation_metrics(mask.astype(bool), gt.astype(bool), spacing).items()}

    @staticmethod
    def _write_qc(volume: Any, out: Any, mask: np.ndarray, gt: np.ndarray | None, case_id: str,
                  label: str, p: float, folder: RunFolder) -> None:
        import nibabel as nib

        from livercad.io.atomic import atomic_write_bytes
        from livercad.report.overlay import qc_png

        ornt = out.prepared.ornt
        canon = nib.orientations.apply_orientation(volume.data, ornt)
        cmask = nib.orientations.apply_orientation(mask, ornt)
        cref = nib.orientations.apply_orientation(gt, ornt) if gt is not None else None
        png = qc_png(canon, cmask, title=f"{case_id}: {label} (p={p:.2f})", ref_canonical=cref)
        atomic_write_bytes(folder.qc_path(case_id), png)
