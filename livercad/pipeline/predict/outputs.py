"""The output folder of a run: lock, per-case records, and the tables built from them.

Crash safety rests on two rules: every file is written atomically (temporary name, then rename), and
a case counts as done only when its record ``cases/<case_id>.json`` exists — written last, after its
mask and QC image. ``--resume`` skips exactly those cases; the tables (predictions.csv,
failures.csv) are rebuilt from the records, so a run killed at any point resumes without loss or
duplicates.

One run per folder: ``.livercad.lock`` holds the owner's pid and host; a second run refuses, and a lock
left by a dead process on this host is taken over.

Masks go to ``masks/<case_id>.nii.gz`` (``output_format`` ``nifti`` and ``both``, and always for non-DICOM
input) and, for DICOM input with ``dicom-seg`` or ``both``, to ``seg/<case_id>.dcm`` (DICOM-SEG). A record
counts as done for ``--resume`` only when it has the files the run's output format asks for.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from livercad.errors import ConfigError, InputError, LivercadError
from livercad.io.atomic import atomic_write_text
from livercad.types import CaseResult

LOCK_NAME = ".livercad.lock"
#: ``run_pipeline(output_format=...)`` values: NIfTI masks, DICOM-SEG (DICOM input), or both.
OUTPUT_FORMATS = ("nifti", "dicom-seg", "both")


def check_output_format(output_format: str) -> str:
    """The output format, lower-cased; ConfigError (exit code 2) for an unknown one.

    Example:
        >>> check_output_format("DICOM-SEG")
        'dicom-seg'
    """
    value = str(output_format).strip().lower()
    if value not in OUTPUT_FORMATS:
        raise ConfigError(f"--output-format: unknown output format '{output_format}'; expected one of "
                          f"{', '.join(OUTPUT_FORMATS)}")
    return value


class OutputLockedError(LivercadError):
    """Another live run is writing into the same output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    """An output folder owned by this run (use as a context manager).

    Args:
        root: the folder.
        output_format: the run's ``nifti`` | ``dicom-seg`` | ``both`` (what a resumable record must have).
    """

    def __init__(self, root: str | Path, *, output_format: str = "nifti") -> None:
        self.root = Path(root)
        self.output_format = check_output_format(output_format)
        self._locked = False

    # -- paths -----------------------------------------------------------------------------------
    def mask_path(self, case_id: str) -> Path:
        """Where a case's mask goes."""
        return self._inside("masks", f"{case_id}.nii.gz")

    def seg_path(self, case_id: str) -> Path:
        """Where a case's DICOM-SEG goes."""
        return self._inside("seg", f"{case_id}.dcm")

    def qc_path(self, case_id: str) -> Path:
        """Where a case's QC overlay goes."""
        return self._inside("qc", f"{case_id}.png")

    def record_path(self, case_id: str) -> Path:
        """Where a case's completion record goes."""
        return self._inside("cases", f"{case_id}.json")

    def _inside(self, sub: str, name: str) -> Path:
        folder = (self.root / sub).resolve()
        full = (folder / name).resolve()
        if full.parent != folder or not name or "/" in name or "\\" in name:
            raise InputError(name, f"refusing to write outside the output folder {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        return full

    # -- lock ------------------------------------------------------------------------------------
    def __enter__(self) -> RunFolder:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / LOCK_NAME
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            tmp = self.root / f".livercad.lock.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(me))
            try:
                os.link(tmp, lock)  # atomic: the lock appears with its content, or not at all
            except FileExistsError:
                if not self._stale(lock):
                    raise OutputLockedError(
                        f"{self.root}: another livercad run is using this output folder ({lock} held by "
                        f"{lock.read_text(errors='replace').strip()}); wait for it or choose another --out"
                    ) from None
                lock.unlink(missing_ok=True)
                continue
            finally:
                tmp.unlink(missing_ok=True)
            self._locked = True
            self._remove_stale_temps()
            return self
        raise OutputLockedError(f"{self.root}: could not take the lock {lock}")

    def _remove_stale_temps(self) -> None:
        """Delete temporary files a killed run left behind (never files under a final name)."""
        for sub in ("", "masks", "seg", "qc", "cases"):
            folder = self.root / sub
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp*"):
                    tmp.unlink(missing_ok=True)

    @staticmethod
    def _stale(lock: Path) -> bool:
        try:
            owner = json.loads(lock.read_text())
        except (OSError, ValueError):
            return time.time() - lock.stat().st_mtime > 60 if lock.exists() else True
        if owner.get("host") != socket.gethostname():
            return False
        return not _pid_alive(int(owner.get("pid", -1)))

    def __exit__(self, *exc: object) -> None:
        if self._locked:
            (self.root / LOCK_NAME).unlink(missing_ok=True)
            self._locked = False

    # -- records ---------------------------------------------------------------------------------
    def write_record(self, result: CaseResult) -> None:
        """Mark a case finished (successfully or not) by writing its record atomically."""
        atomic_write_text(self.record_path(result.case_id), json.dumps(asdict(result), default=str))

    def read_record(self, case_id: str) -> CaseResult | None:
        """The finished record of a case, or None when missing, unreadable or short of the run's outputs."""
        path = self.root / "cases" / f"{case_id}.json"
        try:
            record = CaseResult(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        return record if has_outputs(record, self.output_format) else None


def has_outputs(record: CaseResult, output_format: str) -> bool:
    """Whether a finished record holds what ``output_format`` asks for (failed records: always).

    A NIfTI mask is missing only when the record has a DICOM-SEG instead (records of older runs have neither
    field set and count as done); a DICOM-SEG is missing unless written or noted as impossible.

    Example:
        >>> r = CaseResult("a", "a.nii", mask_path="masks/a.nii.gz")
        >>> has_outputs(r, "nifti"), has_outputs(r, "both")
        (True, False)
    """
    if not record.ok:
        return True
    if output_format in ("nifti", "both") and record.mask_path is None and record.seg_path is not None:
        return False
    return not (output_format in ("dicom-seg", "both") and record.seg_path is None and record.note is None)


#: predictions.csv columns after the per-class probabilities.
CASE_COLUMNS = ("liver_volume_ml", "liver_area_cm2", "liver_mean", "liver_median", "liver_sd", "intensity_unit",
                "spleen_volume_ml", "spleen_mean", "liver_minus_spleen", "mask_source", "modality", "modality_source",
                "series_description", "contrast_phase", "image_domain",
                "input_format", "spacing_known", "true_label", "dice", "mask_path", "seg_path", "note", "input")


def prediction_columns(classes: Sequence[str]) -> list[str]:
    """Column order of predictions.csv: id, verdict and its status, one ``prob_<class>`` per class, the rest.

    Example:
        >>> prediction_columns(["normal", "cirrhosis"])[:5]
        ['case_id', 'predicted_label', 'verdict_status', 'prob_normal', 'prob_cirrhosis']
    """
    return ["case_id", "predicted_label", "verdict_status", *(f"prob_{c}" for c in classes), *CASE_COLUMNS]


def prediction_rows(results: Iterable[CaseResult], classes: Sequence[str]) -> list[dict[str, object]]:
    """One row per successful case for predictions.csv (keys as :func:`prediction_columns`)."""
    rows = []
    for r in results:
        if not r.ok:
            continue
        row: dict[str, object] = {"case_id": r.case_id, "predicted_label": r.predicted_label,
                                  "verdict_status": r.verdict_status}
        for c in classes:
            row[f"prob_{c}"] = r.probabilities.get(c)
        row.update({k: _cell(getattr(r, k)) for k in CASE_COLUMNS if k != "input"})
        row["input"] = r.input_path
        rows.append(row)
    return rows


def _cell(value: object) -> object:
    """A CSV cell: booleans as ``true``/``false``, everything else as it is."""
    return str(value).lower() if isinstance(value, bool) else value


def failure_rows(results: Iterable[CaseResult]) -> list[dict[str, object]]:
    """One row per failed case for failures.csv."""
    return [{"case_id": r.case_id, "input": r.input_path, "reason": r.error} for r in results if not r.ok]


def write_csv(path: Path, rows: Sequence[dict[str, object]], columns: Sequence[str]) -> Path:
    """Write rows as CSV atomically (numbers with full precision, None as empty)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())
