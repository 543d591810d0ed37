"""A case's files: its image (NIfTI, DICOM, PNG/JPEG), its reference mask, what its record keeps, its masks.

* :func:`load_case_volume`: NIfTI with :func:`~livercad.io.nifti.load_volume`, DICOM with
  :func:`~livercad.io.dicom.load_dicom_series` (the series' files, or the manifest's file or folder), PNG/JPEG
  with :func:`~livercad.io.image2d.load_image2d`. The run's ``spacing`` applies to 2-D images that give none
  (every PNG/JPEG; a DICOM image without PixelSpacing or ultrasound regions); a file's own spacing wins.
  A multi-phase model's further images come from the ``image_<phase>`` columns or a 4-D NIfTI
  (:mod:`livercad.io.channels`).
* :func:`record_modality`: the case's own modality is the DICOM Modality tag when it is CT, MR or US, else
  the manifest's ``modality`` column; the two must agree. A 2-D image file (PNG/JPEG, or DICOM whose tag is
  none of those) that names no modality, in a run without ``--modality``, is refused: the intensity rule
  would take its 8-bit grey values for MR.
* :func:`case_fields`: input format, series description, contrast phase (the manifest's column, else the
  DICOM series'), ``spacing_known`` and a compact record of the source file (UIDs, series number ...).
* :func:`load_reference`: a NIfTI label image, or a DICOM-SEG (read onto the DICOM image's grid), with the
  liver label values the caller resolved (:func:`livercad.segment.data.row_liver_labels`).
* :func:`write_masks`: ``masks/<id>.nii.gz`` unless the run asks for DICOM-SEG only on DICOM input;
  ``seg/<id>.dcm`` for DICOM input with ``dicom-seg``/``both``; other input with those formats gets a note.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from livercad.errors import InputError
from livercad.io.dicom_meta import DicomRecord, modality_family
from livercad.io.image2d import Image2DRecord
from livercad.pipeline.predict.inputs import CaseInput
from livercad.pipeline.predict.outputs import RunFolder
from livercad.types import Volume

NO_DICOM_NOTE = "dicom-seg needs DICOM input (NIfTI mask written)"
_MODALITY_HINT = ("the intensity rule would take its grey values for MR: pass --modality us (or the image's "
                  "modality), or give it in a manifest modality column")


def input_format(case: CaseInput) -> str:
    """``nifti`` | ``dicom`` | ``png`` | ``jpeg``, from the case's reader and file name.

    Example:
        >>> from livercad.pipeline.predict.inputs import file_case
        >>> input_format(file_case("a", Path("a.JPG"), "image2d"))
        'jpeg'
    """
    if case.kind == "image2d":
        return "png" if Path(case.row.image).name.lower().endswith(".png") else "jpeg"
    return case.kind


def load_case_volume(case: CaseInput, images: Sequence[str] = ("image",)) -> Volume:
    """The case's image as a :class:`~livercad.types.Volume` (InputError naming the file when unusable).

    ``images``: the co-registered images the model takes (``image`` first); the others become the volume's
    channels (:func:`livercad.io.channels.load_images`: ``image_<phase>`` columns, or a 4-D NIfTI's 4th axis
    with the case's ``channels_axis``).
    """
    from livercad.io.channels import load_images

    if case.channels_axis and case.kind == "nifti":
        return load_images(case.row, images, _reader(case), channels_axis=True)
    volume = _load_one(case)
    return volume if len(images) == 1 else load_images(case.row, images, _reader(case), first=volume)


def _load_one(case: CaseInput) -> Volume:
    """The case's own image (``row.image``, or its DICOM series' files)."""
    if case.kind == "image2d":
        from livercad.io.image2d import load_image2d

        return load_image2d(case.row.image, spacing=case.spacing)
    if case.kind == "dicom":
        from livercad.io.dicom import load_dicom_series

        return with_spacing(load_dicom_series(list(case.files) if case.files else case.row.image), case.spacing)
    from livercad.io.nifti import load_volume

    return load_volume(case.row.image)


def _reader(case: CaseInput) -> Callable[[Path], Volume]:
    """How a further image of the case is read: any image livercad reads, with the run's 2-D pixel spacing."""
    from livercad.io.image import load_image

    return lambda path: with_spacing(load_image(path, spacing=case.spacing), case.spacing)


def with_spacing(volume: Volume, spacing: tuple[float, float] | None) -> Volume:
    """A DICOM volume without pixel spacing given ``spacing`` (``(sx, sy)`` mm); others unchanged.

    The in-plane affine columns are scaled; the top-left pixel (row 0, column 0) stays where it was.
    """
    record = volume.header
    if spacing is None or not isinstance(record, DicomRecord) or record.spacing_known:
        return volume
    old, rows = volume.spacing, volume.shape[1]
    affine = np.array(volume.affine, dtype=np.float64)
    top_left = affine @ np.array([0.0, rows - 1.0, 0.0, 1.0])
    affine[:3, 0] *= spacing[0] / old[0]
    affine[:3, 1] *= spacing[1] / old[1]
    affine[:3, 3] = top_left[:3] - affine[:3, 1] * (rows - 1)
    return replace(volume, affine=affine, spacing=(float(spacing[0]), float(spacing[1]), old[2]),
                   header=replace(record, spacing_known=True, spacing_source="given"))


def record_modality(case: CaseInput, volume: Volume) -> tuple[str | None, str]:
    """(the case's own modality or ``None``, where it was read) — see the module docstring.

    Raises:
        InputError: naming the image: the manifest contradicts the DICOM tag, an unknown manifest value, or a
            2-D image file without a modality in a run without ``--modality``.
    """
    from livercad.modality import family

    tag = volume.header.modality if isinstance(volume.header, DicomRecord) else None
    tag_family, own, image = modality_family(tag), case.modality, case.row.image
    try:
        column = family(own) if own else None
    except InputError as exc:
        raise InputError(image, exc.reason) from None
    if tag_family and column and column != tag_family:
        raise InputError(image, f"the manifest's modality '{own}' contradicts the DICOM Modality "
                                f"tag {tag}: correct the manifest or leave its cell empty")
    if tag_family:
        return tag, "the DICOM Modality tag"
    if own:
        return own, "the case's record"
    if case.run_modality is None and case.kind != "nifti" and volume.shape[2] == 1:
        what = "a PNG/JPEG image names no modality" if tag is None else (
            f"the DICOM Modality tag '{tag}' of this 2-D image is not CT, MR or US")
        raise InputError(image, f"{what} and {_MODALITY_HINT}")
    return None, ""


def dicom_summary(record: DicomRecord) -> dict[str, Any]:
    """The part of a DICOM record a case record keeps (no per-slice lists)."""
    return {"modality": record.modality, "series_number": record.series_number, "study_uid": record.study_uid,
            "series_uid": record.series_uid, "frame_of_reference_uid": record.frame_of_reference_uid,
            "contrast_phase_source": record.contrast_phase_source, "spacing_source": record.spacing_source,
            "patient_geometry": record.patient_geometry, "transfer_syntax": record.transfer_syntax,
            "images": len(record.files), "rows": record.rows, "columns": record.columns,
            "skipped_objects": len(record.skipped)}


def case_fields(case: CaseInput, volume: Volume) -> dict[str, Any]:
    """What the case record keeps of its image file (see the module docstring)."""
    header, phase = volume.header, case.contrast_phase
    fields: dict[str, Any] = {"input_format": input_format(case), "series_description": None,
                              "contrast_phase": phase,
                              "spacing_known": bool(getattr(header, "spacing_known", True)), "image_record": {}}
    if isinstance(header, DicomRecord):
        fields.update(series_description=header.series_description,
                      contrast_phase=phase or header.contrast_phase, image_record=dicom_summary(header))
    elif isinstance(header, Image2DRecord):
        fields["image_record"] = header.as_dict()
    return fields


def load_reference(case: CaseInput, volume: Volume, liver_labels: Sequence[int] | None) -> np.ndarray | None:
    """The reference liver mask on ``volume``'s grid: a NIfTI label image or a DICOM-SEG; ``None`` without one.

    ``liver_labels``: the label values that count as liver (``None``: every value > 0); a DICOM-SEG's segment
    is the only one or the one typed Liver, and a single ``liver_labels`` value names it.
    """
    mask = case.row.mask
    if mask is None:
        return None
    from livercad.io.dicom import is_dicom_file

    if not is_dicom_file(mask):
        from livercad.io.nifti import load_mask

        return load_mask(mask, volume, liver_labels=liver_labels)
    if not isinstance(volume.header, DicomRecord):
        raise InputError(mask, f"a DICOM-SEG reference mask needs a DICOM image; {case.row.image} is "
                               f"{input_format(case)}: give the mask as NIfTI")
    from livercad.io.dicom_seg import read_dicom_seg

    labels = liver_labels
    return read_dicom_seg(mask, volume, segment_number=labels[0] if labels and len(labels) == 1 else None)


def write_masks(mask: np.ndarray, volume: Volume, case: CaseInput, folder: RunFolder) -> dict[str, str | None]:
    """Write the case's mask in the run's output format; ``mask_path``, ``seg_path`` and ``note`` for its record."""
    from livercad.io.nifti import save_mask

    is_dicom, case_id = isinstance(volume.header, DicomRecord), case.row.case_id
    out: dict[str, str | None] = {"mask_path": None, "seg_path": None, "note": None}
    if case.output_format != "dicom-seg" or not is_dicom:
        out["mask_path"] = str(Path(save_mask(mask, volume, folder.mask_path(case_id))))
    if case.output_format == "nifti":
        return out
    if is_dicom:
        from livercad.io.dicom_seg import write_dicom_seg

        out["seg_path"] = str(Path(write_dicom_seg(mask, volume, None, folder.seg_path(case_id))))
    else:
        out["note"] = NO_DICOM_NOTE
    return out
