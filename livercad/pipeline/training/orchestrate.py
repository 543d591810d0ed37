"""Training a whole pipeline: cohort -> stage 1 -> stage-1 predictions -> stage 2 -> bundle.

Stage 2 is trained on stage-1 *predicted* masks (as at inference), taken from one pass of the trained
segmenter over every case; that pass (:func:`stage1_cache`) runs stage 1 exactly as prediction does
(:mod:`livercad.pipeline.stage1`) and is kept so the ablation study can reuse it without re-segmenting.

``resume=True`` continues an interrupted run in the same folder: a stage whose export is already there
(same settings and inputs) is not trained again, an interrupted stage continues from its
``last.ckpt`` (see :mod:`livercad.runtime.resume`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from livercad.config import Config
from livercad.io.manifest import ManifestRow
from livercad.types import Stage1Case

if TYPE_CHECKING:
    from livercad.classify.fit import TrainedClassifier
    from livercad.segment.infer import Segmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage1Training:
    """What :func:`train_stage1` produced (shared by the pipeline and the ablation).

    Attributes:
        rows: The cohort, split (``train`` / ``val`` / ``test``) by patient when the manifest had no split.
        checkpoint: The segmenter's ``segmenter.pt`` (trained here, or the ``segment.init`` model used as it is).
        segmenter: That checkpoint loaded with the run's inference settings (:func:`load_stage1`).
        stage1: The stage-1 cache: one :class:`~livercad.types.Stage1Case` per row, in row order.
        timing: Seconds per step: ``data_s``, ``train_segment_s``, ``stage1_inference_s``.
    """

    rows: list[ManifestRow]
    checkpoint: Path
    segmenter: Segmenter
    stage1: list[Stage1Case]
    timing: dict[str, float]


@dataclass(frozen=True)
class PipelineTraining:
    """What :func:`train_pipeline` produced.

    Attributes:
        bundle: The model bundle folder (``out_dir/model``).
        rows: The split cohort (as :attr:`Stage1Training.rows`).
        stage1: The stage-1 cache of every case (as :attr:`Stage1Training.stage1`).
        classifier: The trained stage-2 classifier.
        timing: Seconds per step: those of :attr:`Stage1Training.timing` and ``train_classify_s``.
    """

    bundle: Path
    rows: list[ManifestRow]
    stage1: list[Stage1Case]
    classifier: TrainedClassifier
    timing: dict[str, float]


def cohort_rows(cfg: Config, work_dir: Path) -> list[ManifestRow]:
    """The cases to train on: the configured manifest, or a freshly generated phantom cohort.

    A randomised cohort (``data.phantom.randomise``) gets ``data.phantom.anchor`` classic phantom cases
    beside it (written to ``work_dir/data_anchor``; patient ids ``P…`` never meet the randomised ``S…``).
    Rows without a split are split by patient (stratified, seeded).
    """
    from livercad.io.manifest import read_manifest
    from livercad.pipeline.training.splits import patient_split

    manifest = cfg.data.manifest
    ph = cfg.data.phantom
    if manifest is None and ph.randomise and ph.phases:
        from livercad.errors import ConfigError

        raise ConfigError("data.phantom.phases: the randomised phantom (data.phantom.randomise) renders one image "
                          "per case; set phases on the classic phantom")
    if manifest is None and ph.anchor and not ph.randomise:
        from livercad.errors import ConfigError

        raise ConfigError("data.phantom.anchor: classic cases beside a randomised cohort need "
                          "data.phantom.randomise: true (for the classic phantom alone, set data.phantom.n)")
    anchor = None
    if manifest is None and ph.randomise:
        from livercad.phantom import generate_cohort
        from livercad.phantom.synth import generate_randomised_cohort

        manifest = generate_randomised_cohort(work_dir / "data", n=ph.n, seed=ph.seed, modalities=ph.modalities,
                                              version=ph.version)
        if ph.anchor:
            anchor = generate_cohort(work_dir / "data_anchor", n=ph.anchor, modality=ph.modality, seed=ph.seed,
                                     shape=ph.shape, classes=tuple(ph.classes), orientations=ph.orientations,
                                     ct_phase=ph.ct_phase)
    elif manifest is None:
        from livercad.phantom import generate_cohort

        manifest = generate_cohort(work_dir / "data", n=ph.n, modality=ph.modality, seed=ph.seed,
                                   shape=ph.shape, classes=tuple(ph.classes), sites=ph.sites,
                                   shortcut=ph.shortcut, orientations=ph.orientations, ct_phase=ph.ct_phase,
                                   phases=tuple(ph.phases))
    rows = read_manifest(manifest) + (read_manifest(anchor) if anchor is not None else [])
    if any(not r.split for r in rows):
        rows = patient_split(rows, fractions=cfg.data.split_fractions, seed=cfg.data.split_seed)
    return rows


def load_stage1(path: str | Path, cfg: Config) -> Segmenter:
    """The trained segmenter at ``path`` with the run's ``inference`` precision, backend and memory format."""
    from livercad.segment.infer import Segmenter

    inf = cfg.inference
    return Segmenter.load(path, precision=inf.precision, backend=inf.backend, channels_last=inf.channels_last)


def stage1_cache(segmenter: Segmenter, rows: list[ManifestRow], cfg: Config) -> list[Stage1Case]:
    """Run the trained segmenter once over every case and keep what stage 2 needs (model space only).

    Each row is stage 1 of :mod:`livercad.pipeline.stage1`, as at prediction: its modality is its own
    (DICOM Modality tag, ``modality`` column), else ``cfg.preprocess.modality``; its reference mask is read
    with ``cfg.data.liver_labels``, else the row's ``liver_labels`` column. ``cfg.inference`` gives the slice
    batch size and ``coarse_to_fine``, ``cfg.segment.postprocess`` the post-processing and
    ``cfg.classify.classes`` the label indices. With ``data.external_masks`` (a folder) another tool's masks are
    kept beside (``CaseSlices.external``) or, with ``classify.mask_source: external``, instead of the segmenter's.
    A multi-phase segmenter reads each row's images (its ``images``; ``data.channels_axis``: a 4-D NIfTI).
    """
    from livercad.errors import ConfigError
    from livercad.io.external_masks import masks_from_config
    from livercad.pipeline.predict.inputs import case_from_row
    from livercad.pipeline.stage1 import Stage1Options, open_case, run_stage1

    masks = masks_from_config(cfg.data.external_masks, cfg.data.external_labels, rows)
    source = cfg.classify.mask_source
    if source == "external" and masks is None:
        raise ConfigError("classify.mask_source: external needs data.external_masks (a folder of masks)")
    options = Stage1Options(batch_size=cfg.inference.batch_size, postprocess=cfg.segment.postprocess,
                            coarse_to_fine=cfg.inference.coarse_to_fine, classes=tuple(cfg.classify.classes),
                            keep_mask=False, masks=masks, source=source)
    trained = None if source == "external" else segmenter.modalities
    out: list[Stage1Case] = []
    for row in rows:
        case = case_from_row(row, run_modality=cfg.preprocess.modality, channels_axis=cfg.data.channels_axis)
        opened = open_case(case, trained=trained, liver_labels=cfg.data.liver_labels, images=segmenter.images)
        out.append(run_stage1(segmenter, opened, options))
    return out


def train_stage1(cfg: Config, out: Path, *, progress: bool = True, resume: bool = False) -> Stage1Training:
    """Cohort -> trained segmenter -> stage-1 cache of every case (shared by the pipeline and the ablation).

    ``resume``: continue an interrupted stage-1 training in ``out`` (see :func:`train_segmenter`).

    Returns:
        The cohort, segmenter checkpoint, loaded segmenter, stage-1 cache and timing (:class:`Stage1Training`).
    """
    from livercad.pipeline.training.preflight import ensure_run_weights

    ensure_run_weights(cfg, segment=True)  # before any data work (skipped when stage 1 starts from segment.init)
    from livercad.segment.fit import train_segmenter  # Lightning, MONAI: after the check, which fails in seconds

    timing: dict[str, float] = {}
    t = time.perf_counter()
    rows = cohort_rows(cfg, out)
    timing["data_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if cfg.segment.init and not cfg.segment.finetune:  # a trained segmenter used as it is
        from livercad.models import segmenter_checkpoint

        ckpt = segmenter_checkpoint(cfg.segment.init)
    else:
        ckpt = train_segmenter(rows, cfg, out / "work" / "segment", progress=progress, resume=resume)
    timing["train_segment_s"] = time.perf_counter() - t
    t = time.perf_counter()
    segmenter = load_stage1(ckpt, cfg)
    stage1 = stage1_cache(segmenter, rows, cfg)
    timing["stage1_inference_s"] = time.perf_counter() - t
    return Stage1Training(rows=rows, checkpoint=ckpt, segmenter=segmenter, stage1=stage1, timing=timing)


def train_pipeline(cfg: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False
                   ) -> PipelineTraining:
    """Train both stages and write a bundle to ``out_dir/model``.

    ``resume``: continue a run interrupted in ``out_dir`` (finished stages are reused, an interrupted
    one continues from its last checkpoint); without a checkpoint it trains from the start.

    Returns:
        The bundle path, the split cohort, the stage-1 cache of every case, the trained classifier and
        the timing (:class:`PipelineTraining`).
    """
    from livercad.pipeline.training.preflight import ensure_run_weights

    ensure_run_weights(cfg, classify=True)  # stage 2's weights before stage 1; train_stage1 checks stage 1's first
    from livercad.classify.fit import train_classifier  # Lightning: after the check, which fails in seconds
    from livercad.pipeline.bundle import write_bundle

    out = Path(out_dir)
    s1 = train_stage1(cfg, out, progress=progress, resume=resume)
    rows, seg_ckpt, segmenter, stage1 = s1.rows, s1.checkpoint, s1.segmenter, s1.stage1
    timing = dict(s1.timing)
    t = time.perf_counter()
    train = [s.stage2 for s in stage1 if s.row.split == "train" and s.stage2.label is not None]
    val = [s.stage2 for s in stage1 if s.row.split == "val" and s.stage2.label is not None]
    trained = train_classifier(train, val, cfg.classify, out / "work" / "classify", seed=cfg.seed,
                               progress=progress, resume=resume)
    timing["train_classify_s"] = time.perf_counter() - t
    clf_ckpt = out / "work" / "classify" / "classifier.pt"
    weights = {"segmenter": segmenter.meta.get("weights"), "classifier": trained.meta.get("weights")}
    bundle = write_bundle(out / "model", segmenter=seg_ckpt, classifier=clf_ckpt, config=cfg,
                          extra={"weights": weights, "training": {"timing_s": timing,
                                                                  "segment": segmenter.meta.get("history"),
                                                                  "classify": trained.meta.get("history")}})
    return PipelineTraining(bundle=bundle, rows=rows, stage1=stage1, classifier=trained, timing=timing)
