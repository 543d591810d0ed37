"""Training a whole pipeline: cohort -> stage 1 -> stage-1 predictions -> stage 2 -> bundle.

Stage 2 is trained on stage-1 *predicted* masks (as at inference), taken from one pass of the trained
segmenter over every case; that pass (:func:`stage1_cache`) is kept so the ablation study can reuse it
without re-segmenting.

``resume=True`` continues an interrupted run in the same folder: a stage whose export is already there
(same settings and inputs) is not trained again, an interrupted stage continues from its
``last.ckpt`` (see :mod:`livercad.runtime.resume`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livercad.config import Config
from livercad.io.manifest import ManifestRow

log = logging.getLogger(__name__)


@dataclass
class Stage1Case:
    """A case after stage 1: the classifier's input cache plus the original-grid Dice."""

    row: ManifestRow
    slices: Any  # classify.data.CaseSlices
    seg_metrics: dict[str, float]


def cohort_rows(cfg: Config, work_dir: Path) -> list[ManifestRow]:
    """The cases to train on: the configured manifest, or a freshly generated phantom cohort.

    Rows without a split are split by patient (stratified, seeded).
    """
    from livercad.io.manifest import read_manifest
    from livercad.pipeline.training.splits import patient_split

    manifest = cfg.data.manifest
    ph = cfg.data.phantom
    if manifest is None and ph.randomise:
        from livercad.phantom.synth import generate_randomised_cohort

        manifest = generate_randomised_cohort(work_dir / "data", n=ph.n, seed=ph.seed, modalities=ph.modalities)
    elif manifest is None:
        from livercad.phantom import generate_cohort

        manifest = generate_cohort(work_dir / "data", n=ph.n, modality=ph.modality, seed=ph.seed,
                                   shape=ph.shape, classes=tuple(ph.classes), sites=ph.sites,
                                   shortcut=ph.shortcut, orientations=ph.orientations, ct_phase=ph.ct_phase)
    rows = read_manifest(manifest)
    if any(not r.split for r in rows):
        rows = patient_split(rows, fractions=cfg.data.split_fractions, seed=cfg.data.split_seed)
    return rows


def load_stage1(path: str | Path, cfg: Config) -> Any:
    """The trained segmenter at ``path`` with the run's ``inference`` precision, backend and memory format."""
    from livercad.segment.infer import Segmenter

    inf = cfg.inference
    return Segmenter.load(path, precision=inf.precision, backend=inf.backend, channels_last=inf.channels_last)


def stage1_cache(segmenter: Any, rows: list[ManifestRow], cfg: Config) -> list[Stage1Case]:
    """Run the trained segmenter once over every case and keep what stage 2 needs.

    ``cfg.inference`` gives the slice batch size and ``coarse_to_fine``; ``cfg.segment.postprocess`` the
    post-processing.
    """
    from livercad.classify.data import case_slices_from_segment
    from livercad.io.image import load_image
    from livercad.io.manifest import parse_liver_labels
    from livercad.io.nifti import load_mask
    from livercad.metrics.segmentation import segmentation_metrics
    from livercad.segment.data import row_modality
    from livercad.segment.infer import segment_volume

    out: list[Stage1Case] = []
    classes = list(cfg.classify.classes)
    for row in rows:
        vol = load_image(row.image)
        seg = segment_volume(segmenter, vol, batch_size=cfg.inference.batch_size,
                             postprocess=cfg.segment.postprocess, coarse_to_fine=cfg.inference.coarse_to_fine,
                             modality=row_modality(row, cfg.preprocess.modality))
        gt = gt_model = None
        metrics: dict[str, float] = {}
        if row.mask is not None:
            labels = parse_liver_labels(row.extra.get("liver_labels", "")) if row.extra else None
            gt = load_mask(row.mask, vol, liver_labels=labels)
            gt_model = seg.prepared.from_original(gt.astype("uint8"))
            metrics = segmentation_metrics(seg.segmentation.mask.astype(bool), gt.astype(bool), vol.spacing)
        label = classes.index(row.label) if row.label in classes else None
        cs = case_slices_from_segment(seg, row.case_id, row.patient_id, label, gt=gt_model)
        out.append(Stage1Case(row=row, slices=cs, seg_metrics=metrics))
    return out


def train_stage1(cfg: Config, out: Path, *, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Cohort -> trained segmenter -> stage-1 cache of every case (shared by the pipeline and the ablation).

    ``resume``: continue an interrupted stage-1 training in ``out`` (see :func:`train_segmenter`).

    Returns:
        ``rows``, ``checkpoint``, ``segmenter``, ``stage1`` and ``timing`` (seconds per step).
    """
    from livercad.segment.fit import train_segmenter

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
    return {"rows": rows, "checkpoint": ckpt, "segmenter": segmenter, "stage1": stage1, "timing": timing}


def train_pipeline(cfg: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False
                   ) -> dict[str, Any]:
    """Train both stages and write a bundle to ``out_dir/model``.

    ``resume``: continue a run interrupted in ``out_dir`` (finished stages are reused, an interrupted
    one continues from its last checkpoint); without a checkpoint it trains from the start.

    Returns:
        A dict with ``bundle`` (path), ``rows`` (the split cohort), ``stage1`` (the stage-1 cache of every
        case), ``classifier`` (the trained classifier object) and ``timing``.
    """
    from livercad.classify.fit import train_classifier
    from livercad.pipeline.bundle import write_bundle

    out = Path(out_dir)
    s1 = train_stage1(cfg, out, progress=progress, resume=resume)
    rows, seg_ckpt, segmenter, stage1 = s1["rows"], s1["checkpoint"], s1["segmenter"], s1["stage1"]
    timing = dict(s1["timing"])
    t = time.perf_counter()
    train = [s.slices for s in stage1 if s.row.split == "train" and s.slices.label is not None]
    val = [s.slices for s in stage1 if s.row.split == "val" and s.slices.label is not None]
    trained = train_classifier(train, val, cfg.classify, out / "work" / "classify", seed=cfg.seed,
                               progress=progress, resume=resume)
    timing["train_classify_s"] = time.perf_counter() - t
    clf_ckpt = out / "work" / "classify" / "classifier.pt"
    weights = {"segmenter": segmenter.meta.get("weights"), "classifier": trained.meta.get("weights")}
    bundle = write_bundle(out / "model", segmenter=seg_ckpt, classifier=clf_ckpt, config=cfg,
                          extra={"weights": weights, "training": {"timing_s": timing,
                                                                  "segment": segmenter.meta.get("history"),
                                                                  "classify": trained.meta.get("history")}})
    return {"bundle": bundle, "rows": rows, "stage1": stage1, "classifier": trained, "timing": timing}
