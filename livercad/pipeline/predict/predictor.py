"""Per-case work of a prediction run: the models load once, then each case flows one way.

stage 1 (:mod:`livercad.pipeline.stage1`: load the image (NIfTI, DICOM series, PNG/JPEG) -> modality -> reference
mask -> preprocess -> segment -> metrics -> stage-2 input) -> save masks (NIfTI and/or DICOM-SEG) -> liver
statistics (:mod:`livercad.pipeline.predict.case_stats`) -> regions/classify (when the bundle has a classifier)
-> QC -> record.

A multi-phase bundle reads each case's further images (the segmenter's ``images``: ``image_<phase>`` manifest
columns or a 4-D NIfTI, :mod:`livercad.io.channels`); a case that lacks one, or whose images lie on different
grids, fails with a one-line reason naming the file.
A case's modality comes from its record (the DICOM Modality tag, else the manifest column), else the run's
``--modality``, else the intensity rule (:func:`livercad.modality.resolve`; refused for 2-D image files, whose
grey values it would misread); a modality family the segmenter was not trained on fails the case. The
reference mask is read with the bundle config's ``data.liver_labels`` when set, else the manifest's
``liver_labels`` column.
The verdict is flagged ``out-of-domain`` when the classifier was trained on the phantom only and the
image is not from the phantom (:func:`verdict_status`).
Any :class:`~livercad.errors.LivercadError` (or a decoding error of a broken file) fails only its case;
the message becomes the case's one-line reason in failures.csv.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from livercad.config import InferenceConfig
from livercad.errors import LivercadError
from livercad.pipeline.bundle import Bundle
from livercad.pipeline.predict.case_io import input_format, write_masks
from livercad.pipeline.predict.case_stats import liver_intensity, liver_size, size_text, spleen_stats
from livercad.pipeline.predict.inputs import CaseInput
from livercad.pipeline.predict.outputs import RunFolder
from livercad.pipeline.stage1 import Stage1Input, Stage1Options, open_case, run_stage1
from livercad.runtime.backend import release_torch_weights
from livercad.types import CaseResult, CaseSlices

if TYPE_CHECKING:
    from livercad.io.external_masks import ExternalMasks

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class StagesUsed:
    """What the loaded stages actually run with (``auto`` resolved): what run records keep.

    Attributes:
        precision: the segmenter's precision, ``fp32`` or ``bf16``.
        backend_requested: the backend the run asked for (``torch`` | ``onnx`` | ``auto``).
        segmenter_backend, classifier_backend: the backend each stage runs on (``classifier_backend`` ``None``
            without a classifier).
        modalities: the modality families the segmenter was trained on.
    """

    precision: str
    backend_requested: str
    segmenter_backend: str
    classifier_backend: str | None
    modalities: tuple[str, ...]

    @property
    def backends(self) -> dict[str, str | None]:
        """run.json's ``backend``: ``{"requested": ..., "segmenter": ..., "classifier": ...}``."""
        return {"requested": self.backend_requested, "segmenter": self.segmenter_backend,
                "classifier": self.classifier_backend}


class Predictor:
    """The stages of a bundle, loaded once, applied case by case.

    A stage that runs on ONNX Runtime has its torch weights released after loading
    (:func:`livercad.runtime.backend.release_torch_weights`, ~100 MB each): load the checkpoint again for torch work
    such as saliency maps. A segmentation-only bundle has no classifier (``classifier`` is ``None``).

    Args:
        bundle: a verified model bundle.
        inference: precision, backend, channels-last, slice batch size, QC images on/off.
        masks: another tool's masks as stage 1 (``--masks``): nothing is segmented; the bundle's segmenter only
            prepares the image the way its classifier was trained on.

    Attributes:
        used: what the stages actually run with (:class:`StagesUsed`).
    """

    def __init__(self, bundle: Bundle, inference: InferenceConfig, masks: ExternalMasks | None = None) -> None:
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
        self.stage1_options = Stage1Options(batch_size=inference.batch_size,
                                            postprocess=bundle.config.segment.postprocess,
                                            coarse_to_fine=inference.coarse_to_fine, classes=tuple(self.classes),
                                            masks=masks, source="segmenter" if masks is None else "external",
                                            attenuation=False,  # liver/spleen statistics: computed below, once
                                            slices=self.classifier is not None)  # no stage-2 input to build
        self.used = StagesUsed(self.segmenter.precision, inference.backend, self.segmenter.backend,
                               self.classifier.backend if self.classifier is not None else None,
                               tuple(self.segmenter.modalities))
        release_torch_weights(self.segmenter, self.classifier)  # stages on ONNX Runtime never call torch

    def run(self, cases: Sequence[CaseInput], folder: RunFolder,
            done: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
        """:meth:`process` every case in order; ``done`` gets each record as soon as its case has finished.

        With ``inference.read_ahead`` (the default) the next case is opened (read, modality, reference mask:
        :func:`~livercad.pipeline.stage1.open_case`) on a worker thread from the moment the current case's network
        has run: the decompression and parsing of the next file overlap this case's post-processing and outputs,
        which run on one core where the network used them all. At most two cases' images are in memory at once;
        a case that fails to open fails on its turn, with the same one-line reason.
        """
        results: list[CaseResult] = []
        ahead = self.inference.read_ahead and len(cases) > 1
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="livercad-read-ahead") if ahead else nullcontext() \
                as pool:
            opening: _Opening | None = None
            for i, case in enumerate(cases):
                nxt = _ReadAhead(self, pool, cases[i + 1] if pool is not None and i + 1 < len(cases) else None)
                result = self.process(case, folder, opening=opening, after_model=nxt.start)
                opening = nxt.opening
                if done is not None:
                    done(result)
                results.append(result)
        return results

    def process(self, case: CaseInput, folder: RunFolder, *, opening: _Opening | None = None,
                after_model: Callable[[], None] | None = None) -> CaseResult:
        """Run one case; never raises for a bad case, returns a failed CaseResult instead.

        ``opening``: the case already being opened by :meth:`run`'s read-ahead. ``after_model``: called once the
        network has run, or when the case ends without it (it failed, or external masks replace the network).
        The record's ``seconds`` is the wall time from this call to its end (a case read ahead is timed from
        when its turn came).
        """
        t0 = time.perf_counter()
        known = opening.known if opening is not None else self.known(case)
        try:
            result = self._process(case, folder, known, opening, after_model)
        except (LivercadError, OSError, ValueError, EOFError, MemoryError) as exc:
            row = case.row
            log.warning("case %s failed: %s", row.case_id, one_line(exc))
            result = CaseResult(row.case_id, str(row.image), true_label=row.label, patient_id=row.patient_id or None,
                                error=one_line(exc), **known)
        if after_model is not None:
            after_model()  # idempotent (_ReadAhead.start): a failed case still lets the next one be read
        return CaseResult(**{**result.__dict__, "seconds": round(time.perf_counter() - t0, 3)})

    @staticmethod
    def known(case: CaseInput) -> dict[str, Any]:
        """What a case's record knows before its file is opened (a failed record keeps it)."""
        return {"image_domain": case.image_domain, "input_format": input_format(case)}

    def open(self, case: CaseInput, known: dict[str, Any]) -> Stage1Input:
        """:func:`~livercad.pipeline.stage1.open_case` as this predictor's stages need it; fills ``known``."""
        external = self.stage1_options.source == "external"
        return open_case(case, trained=None if external else self.segmenter.modalities,
                         liver_labels=self.bundle.config.data.liver_labels, known=known, images=self.segmenter.images)

    def _process(self, case: CaseInput, folder: RunFolder, known: dict[str, Any], opening: _Opening | None,
                 after_model: Callable[[], None] | None) -> CaseResult:
        """One case's flow (module docstring); ``known`` collects what a failed record keeps."""
        opened = opening.future.result() if opening is not None else self.open(case, known)
        # the next case is read while this one runs single-threaded work: from the end of stage 1's network
        # on, or, with a classifier (whose network would compete with the read), once it has run
        s1 = run_stage1(self.segmenter, opened, self.stage1_options,
                        after_model=after_model if self.classifier is None else None)
        volume, mask, row = opened.volume, s1.mask, case.row
        assert mask is not None  # kept: Stage1Options.keep_mask
        files = write_masks(mask, volume, case, folder)
        size_args = {"spacing_known": bool(known["spacing_known"]), "has_thickness": case.kind != "image2d"}
        sizes = liver_size(mask, volume, **size_args)
        stats = liver_intensity(volume.data, mask, s1.modality)
        stats.update(spleen_stats(volume, s1.spleen, s1.modality, stats["liver_mean"], **size_args))
        if s1.modality == "ct" and not known.get("contrast_phase"):
            known["contrast_phase"] = "unknown"
        probs, label, status = self._classify(case, s1.slices)
        if after_model is not None:
            after_model()
        if self.inference.qc_images:
            title = _qc_title(row.case_id, label, probs, status, size_text(sizes))
            self._write_qc(opened, mask, title, folder.qc_path(row.case_id))
        return CaseResult(
            case_id=row.case_id, input_path=str(row.image), probabilities=probs, predicted_label=label,
            true_label=row.label, patient_id=row.patient_id or None, dice=s1.seg_metrics.get("dice"),
            segmentation_metrics=s1.seg_metrics, verdict_status=status, **files, **sizes, **known, **stats,
            mask_source=s1.source,
        )

    def _classify(self, case: CaseInput, slices: CaseSlices | None) -> tuple[dict[str, float], str | None, str]:
        """(probabilities, label, verdict status); empty and ``None`` without a classifier."""
        status = verdict_status(self.domain.get("classify") if self.classifier is not None else None,
                                case.image_domain)
        if self.classifier is None:
            return {}, None, status
        from livercad.classify.infer import predict_case

        assert slices is not None  # built whenever there is a classifier (Stage1Options.slices)
        proba = np.asarray(predict_case(self.classifier, slices, batch_size=max(8, self.inference.batch_size)))
        probs = {c: float(p) for c, p in zip(self.classes, proba, strict=True)}
        return probs, self.classes[int(np.argmax(proba))], status

    @staticmethod
    def _write_qc(opened: Stage1Input, mask: np.ndarray, title: str, path: Path) -> None:
        import nibabel as nib

        from livercad.io.atomic import atomic_write_bytes
        from livercad.preprocess.prepare import orientation_of
        from livercad.report.overlay import qc_png

        volume, gt = opened.volume, opened.reference
        ornt = orientation_of(volume.affine)  # the canonical frame stage 1 segmented in
        canon = nib.orientations.apply_orientation(volume.data, ornt)
        cmask = nib.orientations.apply_orientation(mask, ornt)
        cref = nib.orientations.apply_orientation(gt, ornt) if gt is not None else None
        png = qc_png(canon, cmask, title=title, ref_canonical=cref, modality=opened.modality)
        atomic_write_bytes(path, png)


@dataclass(frozen=True)
class _Opening:
    """A case being opened on the read-ahead thread, and the record facts its opening fills."""

    future: Future[Stage1Input]
    known: dict[str, Any]


class _ReadAhead:
    """Opens ``case`` on ``pool`` once :meth:`start` is called (again: nothing); nothing without a pool or case."""

    def __init__(self, predictor: Predictor, pool: ThreadPoolExecutor | None, case: CaseInput | None) -> None:
        self.predictor, self.pool, self.case = predictor, pool, case
        self.opening: _Opening | None = None

    def start(self) -> None:
        """Submit the opening (the first call only)."""
        if self.opening is None and self.pool is not None and self.case is not None:
            known = self.predictor.known(self.case)
            self.opening = _Opening(self.pool.submit(self.predictor.open, self.case, known), known)


def _qc_title(case_id: str, label: str | None, probs: dict[str, float], status: str, size: str) -> str:
    """The QC image's title: the verdict (flagged when out-of-domain), or the liver size without a classifier."""
    if label is None:
        return f"{case_id}: {size} (no classifier)"
    text = f"{case_id}: {label} (p={max(probs.values()):.2f})"
    return f"{text} [out-of-domain]" if status == "out-of-domain" else text


__all__ = ["Predictor", "StagesUsed", "one_line", "verdict_status"]
