"""One reader for every image livercad accepts: NIfTI files, DICOM series (a folder or a file), 2-D image files.

Manifest rows, training and the stage-1 cache read their ``image`` through :func:`load_image`; prediction
discovers inputs in more detail (:mod:`livercad.pipeline.predict.inputs`) and ends in the same readers.

Example:
    >>> image_kind("scan.nii.gz"), image_kind("frame.PNG")
    ('nifti', 'image2d')
"""

from __future__ import annotations

from pathlib import Path

from livercad.types import Volume

IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_kind(path: str | Path) -> str:
    """``dicom`` (a folder, or a file with the DICOM preamble), ``image2d`` (PNG/JPEG) or ``nifti``."""
    p = Path(path)
    if p.is_dir():
        return "dicom"
    if p.name.lower().endswith(IMAGE2D_SUFFIXES):
        return "image2d"
    if p.is_file() and not p.name.lower().endswith((".nii", ".nii.gz")):
        from livercad.io.dicom import is_dicom_file

        if is_dicom_file(p):
            return "dicom"
    return "nifti"


def load_image(path: str | Path, *, spacing: tuple[float, float] | None = None) -> Volume:
    """Read any accepted image as a :class:`~livercad.types.Volume` (one-line InputError naming the file).

    Args:
        path: a NIfTI file, a DICOM series folder or file, or a PNG/JPEG frame.
        spacing: pixel spacing (mm) of a 2-D image file, which carries none.
    """
    kind = image_kind(path)
    if kind == "dicom":
        from livercad.io.dicom import load_dicom_series

        return load_dicom_series(path)
    if kind == "image2d":
        from livercad.io.image2d import load_image2d

        return load_image2d(path, spacing=spacing)
    from livercad.io.nifti import load_volume

    return load_volume(path)
