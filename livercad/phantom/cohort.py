"""Write a phantom cohort to disk (NIfTI images, masks, manifest) and measure its severity ceiling.

Layout: ``out_dir/images/<case_id>.nii.gz`` (CT int16 HU, MR/US float32; ultrasound frames as 2-D
NIfTI), ``out_dir/masks/<case_id>.nii.gz`` (uint8 liver mask on the same grid) and
``out_dir/manifest.csv`` with the columns of :data:`MANIFEST_COLUMNS`. Every case is its own patient.
A multi-phase CT cohort (``phases``) adds each further phase's image and its ``image_<phase>`` column
(:mod:`livercad.phantom.phases`).

Shortcut cohorts (``shortcut=True``) fill the ``split`` column (60/20/20 per label) and put a bright
artifact outside the body edge (site ``B``) on 90 % of the diseased and 10 % of the normal cases in
train/val, but on 50 % of all test cases independently of the label: a classifier that learns the
artifact loses its advantage on the test split.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from livercad.errors import ConfigError, InputError
from livercad.phantom.case import (
    CLASSES,
    DISEASED_BETA,
    MODALITIES,
    NORMAL_BETA,
    SITES,
    PhantomCase,
    build_case,
    check_ct_phase,
    site_effect,
)
from livercad.phantom.geometry import ORIENTATION_WEIGHTS, ORIENTATIONS
from livercad.phantom.phases import check_phases, phase_column

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "case_id", "patient_id", "image", "mask", "label", "split", "modality", "severity", "steatosis",
    "cirrhosis", "site", "site_scale", "site_offset", "site_noise", "site_artifact", "spacing_x", "spacing_y",
    "spacing_z", "orientation", "contrast_phase", "domain")
SHORTCUT_P = {"train": (0.1, 0.9), "val": (0.1, 0.9), "test": (0.5, 0.5)}  # P(site B | normal, diseased)


def _write_nifti(arr: np.ndarray, affine: np.ndarray, path: Path, dtype: type) -> None:
    """Write a NIfTI file atomically with deterministic gzip bytes."""
    try:
        from livercad.io.nifti import save_volume
    except ImportError:  # pragma: no cover - fallback while the I/O module is unavailable
        import gzip

        import nibabel as nib

        img = nib.Nifti1Image(np.asarray(arr).astype(dtype), affine)
        img.header.set_xyzt_units("mm", "sec")
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
        os.replace(tmp, path)
        return
    save_volume(arr, affine, path, dtype=dtype)


def _stratified(rng: np.random.Generator, n: int, beta: tuple[float, float]) -> np.ndarray:
    """``n`` Beta draws, one in each of ``n`` equal-probability strata (low-variance cohorts)."""
    return stats.beta.ppf((rng.permutation(n) + rng.random(n)) / max(n, 1), *beta)


def _shortcut(rng: np.random.Generator, idx: dict[str, list[int]], splits: list[str], sites: list[str]) -> None:
    """Fill 60/20/20 splits per class and give site ``B`` to exact fractions of each (split, class) group."""
    for members in idx.values():
        for k, i in enumerate(rng.permutation(members)):
            splits[i] = "train" if k < round(0.6 * len(members)) else "val" if k < round(0.8 * len(members)) else "test"
    for split, (p_normal, p_diseased) in SHORTCUT_P.items():
        for c, members in idx.items():
            group = rng.permutation([i for i in members if splits[i] == split])
            n_b = round((p_normal if c == "normal" else p_diseased) * len(group))
            for k, i in enumerate(group):
                sites[i] = "B" if k < n_b else "A"


def _plan(n: int, seed: int, classes: Sequence[str], class_probs: Sequence[float] | None, sites: int,
          shortcut: bool, orientations: str, modality: str) -> list[dict[str, Any]]:
    """Label, disease scores, split, site and orientation of every case (no images yet)."""
    rng = np.random.default_rng([seed, 1000])
    if class_probs is None:
        labels = [classes[i % len(classes)] for i in rng.permutation(n)]
    else:
        labels = list(rng.choice(list(classes), size=n, p=np.asarray(class_probs) / np.sum(class_probs)))
    idx = {c: [i for i, lab in enumerate(labels) if lab == c] for c in classes}
    scores = np.zeros((n, 2))
    for c, members in idx.items():
        for col in (0, 1):
            beta = DISEASED_BETA if (c, col) in (("steatosis", 0), ("cirrhosis", 1)) else NORMAL_BETA
            scores[members, col] = _stratified(rng, len(members), beta)
    names = list(SITES)[: max(1, sites)]
    splits, site_of = [""] * n, [names[int(rng.integers(len(names)))] for _ in range(n)]
    if shortcut:
        _shortcut(rng, idx, splits, site_of)
    plan = []
    for i, lab in enumerate(labels):
        orient = "RAS" if orientations == "canonical" or modality == "us" else str(
            rng.choice(ORIENTATIONS, p=ORIENTATION_WEIGHTS))
        plan.append({"index": i, "label": lab, "scores": (float(scores[i, 0]), float(scores[i, 1])),
                     "split": splits[i], "site": site_of[i], "orientation": orient})
    return plan


def _make_and_write(item: dict[str, Any], out: Path, modality: str, seed: int,
                    shape: tuple[int, int, int], ct_phase: str = "portal-venous",
                    phases: tuple[str, ...] = ()) -> dict[str, str]:
    """Generate one planned case, write its image(s) and mask, return its manifest row."""
    i = item["index"]
    case_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
    effect = site_effect(item["site"], SITES[item["site"]][3])
    case: PhantomCase = build_case(f"case_{i:04d}", modality, item["label"], item["scores"], case_seed, shape,
                                   effect, item["orientation"], ct_phase, phases)
    image, mask = case.image, case.mask
    if modality == "us":
        image, mask = image[..., 0], mask[..., 0]
    name = f"{case.case_id}.nii.gz"
    _write_nifti(image, case.affine, out / "images" / name, np.int16 if modality == "ct" else np.float32)
    _write_nifti(mask, case.affine, out / "masks" / name, np.uint8)
    row = {"case_id": case.case_id, "patient_id": f"P{i:04d}", "image": f"images/{name}",
           "mask": f"masks/{name}", "label": case.label, "split": item["split"], "severity": case.severity,
           "domain": "phantom", "contrast_phase": case.meta.get("ct_phase", "")}
    for phase, other in case.phases.items():  # further phases: images/<case_id>_<phase>.nii.gz
        column = phase_column(phase)
        file = f"{case.case_id}_{column.removeprefix('image_')}.nii.gz"
        _write_nifti(other, case.affine, out / "images" / file, np.int16)
        row[column] = f"images/{file}"
    row.update(case.meta)
    return {k: str(row[k]) for k in (*MANIFEST_COLUMNS, *map(phase_column, phases))}


def generate_cohort(out_dir: str | Path, *, n: int = 60, modality: str = "ct", seed: int = 0,
                    shape: tuple[int, int, int] = (128, 128, 48), classes: Sequence[str] = CLASSES,
                    class_probs: Sequence[float] | None = None, sites: int = 1, shortcut: bool = False,
                    orientations: str = "mixed", workers: int = 1, ct_phase: str = "portal-venous",
                    phases: Sequence[str] = ()) -> Path:
    """Generate ``n`` phantom cases into ``out_dir`` and return the manifest path.

    Args:
        out_dir: Output folder (created); existing files of the same names are replaced.
        n: Number of cases (each its own patient ``P0000``, ``P0001``, ...).
        modality: ``"ct"``, ``"mr-t2"`` or ``"us"``.
        seed: Seeds the whole cohort: the same arguments give byte-identical files.
        shape: Volume shape in canonical axial order (ultrasound frames use the first two sizes).
        classes: Labels to draw from (subset of ``normal``, ``steatosis``, ``cirrhosis``); balanced
            unless ``class_probs`` is given.
        class_probs: Optional probabilities of ``classes``.
        sites: Number of sites (1-5) assigned at random; each has its own scale, offset, noise level and
            artifact strength (table ``SITES``).
        shortcut: Build the shortcut-learning cohort described in the module docstring (fills ``split``).
        orientations: ``"mixed"`` (varied storage orientations, some oblique) or ``"canonical"`` (RAS).
        workers: Processes to use (results do not depend on it).
        ct_phase: CT contrast phase, ``"portal-venous"`` (default) or ``"non-contrast"``.
        phases: further CT phases of each case (:data:`~livercad.phantom.phases.PHASES` other than ``ct_phase``),
            rendered from the same label map and written as ``images/<case_id>_<phase>.nii.gz`` in manifest
            columns ``image_<phase>`` (:func:`~livercad.phantom.phases.phase_column`, e.g. ``image_arterial``),
            after the other columns. Empty (default): the files and manifest are those of a one-image cohort.

    Returns:
        Path of ``out_dir/manifest.csv``.

    Example:
        >>> import tempfile
        >>> path = generate_cohort(tempfile.mkdtemp(), n=3, shape=(32, 32, 12))
        >>> path.name, len(path.read_text().splitlines())
        ('manifest.csv', 4)
    """
    if modality not in MODALITIES:
        raise ConfigError(f"unknown phantom modality {modality!r}; expected one of {list(MODALITIES)}")
    bad = [c for c in classes if c not in CLASSES]
    if bad or not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"phantom classes must be distinct names from {list(CLASSES)}, got {list(classes)}")
    if class_probs is not None and (len(class_probs) != len(classes) or min(class_probs) < 0
                                    or sum(class_probs) <= 0):
        raise ConfigError(f"class_probs must be {len(classes)} non-negative numbers, got {list(class_probs)}")
    if n < 1 or not 1 <= sites <= len(SITES) or orientations not in ("mixed", "canonical"):
        raise ConfigError(f"expected n >= 1, sites in 1..{len(SITES)}, orientations mixed|canonical; got "
                          f"n={n}, sites={sites}, orientations={orientations!r}")
    extra = check_phases(phases, check_ct_phase(ct_phase), modality)
    out = Path(out_dir)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    plan = _plan(n, seed, list(classes), class_probs, sites, shortcut, orientations, modality)
    shape3 = tuple(int(s) for s in shape)
    job = partial(_make_and_write, out=out, modality=modality, seed=seed, shape=shape3, ct_phase=ct_phase,
                  phases=extra)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(job, plan))
    else:
        rows = [job(item) for item in plan]
    manifest = write_manifest(out, rows, (*MANIFEST_COLUMNS, *map(phase_column, extra)))
    logger.info("wrote %d %s phantom cases to %s", n, modality, out)
    return manifest


def write_manifest(out: Path, rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> Path:
    """Write ``out/manifest.csv`` atomically (header ``columns``) and return its path."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    manifest = out / "manifest.csv"
    tmp = manifest.with_name(f".manifest.csv.tmp{os.getpid()}")
    tmp.write_text(text.getvalue(), encoding="utf-8")
    os.replace(tmp, manifest)
    return manifest


def _records(rows: str | Path | Iterable[Any]) -> list[dict[str, Any]]:
    """Manifest rows as dicts, from a CSV path, mappings or objects such as ``ManifestRow``."""
    if isinstance(rows, (str, Path)):
        path = Path(rows)
        if not path.is_file():
            raise InputError(path, "manifest file not found")
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    out = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append(dict(row))
        else:
            out.append({"label": getattr(row, "label", None), **dict(getattr(row, "extra", {}) or {}),
                        **{k: getattr(row, k) for k in ("severity", "steatosis", "cirrhosis") if hasattr(row, k)}})
    return out


def severity_ceiling_auc(manifest_rows_or_csv: str | Path | Iterable[Any], positive: str,
                         negative: str = "normal") -> float:
    """ROC AUC that the true disease score reaches for ``positive`` vs ``negative`` cases (the ceiling).

    The score is the column named like ``positive`` (``steatosis``/``cirrhosis``) when present, otherwise
    ``severity``.

    Example:
        >>> rows = [{"label": "normal", "severity": "0.1"}, {"label": "cirrhosis", "severity": "0.6"},
        ...         {"label": "cirrhosis", "severity": "0.05"}]
        >>> severity_ceiling_auc(rows, "cirrhosis")
        0.5
    """
    from sklearn.metrics import roc_auc_score

    records = [r for r in _records(manifest_rows_or_csv) if r.get("label") in (positive, negative)]
    column = positive if records and all(r.get(positive) not in (None, "") for r in records) else "severity"
    y = [r["label"] == positive for r in records]
    if sum(y) == 0 or sum(y) == len(y):
        raise InputError(None, f"severity ceiling needs both {positive!r} and {negative!r} cases, got "
                               f"{sum(y)} and {len(y) - sum(y)}")
    try:
        score = [float(r[column]) for r in records]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(None, f"every {positive}/{negative} row needs a numeric {column!r} value ({exc})") from exc
    return float(roc_auc_score(y, score))
