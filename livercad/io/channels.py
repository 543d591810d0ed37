"""Multi-phase and multi-channel cases: several co-registered images of one case as one :class:`Volume`.

A case's images are named by manifest column, in the order the model takes them (``segment.model.images``,
recorded as ``images`` in both checkpoints): ``image`` first, then ``image_<phase>`` columns, e.g.
``image, image_arterial, image_noncontrast``. Each column holds any image livercad reads (NIfTI, a DICOM
series, PNG/JPEG). Alternatively ``image`` is a 4-D NIfTI whose 4th axis holds all the images in that order,
when the run says so (``data.channels_axis``, ``livercad predict --channels-axis``).

The first image is the case's image: its grid is the one masks are written on and its intensities are the
ones liver statistics and QC images use. The others become :attr:`~livercad.types.Volume.channels`; they must
lie on the very same grid (shape equal, affine within :data:`GRID_ATOL` mm), else a one-line
:class:`~livercad.errors.InputError` names both files. Nothing is resampled.

Example:
    >>> from pathlib import Path
    >>> from livercad.io.manifest import ManifestRow
    >>> row = ManifestRow("a", "a", Path("/d/a.nii.gz"), extra={"image_arterial": "/d/a_art.nii.gz"})
    >>> [str(p) for p in image_paths(row, ["image", "image_arterial"])]
    ['/d/a.nii.gz', '/d/a_art.nii.gz']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from livercad.errors import InputError
from livercad.io.manifest import ManifestRow
from livercad.types import Volume

#: Largest difference (mm, per affine element) between the affines of two images of one case.
GRID_ATOL = 1e-3


def image_paths(row: ManifestRow, names: Sequence[str]) -> list[Path]:
    """The file (or DICOM folder) of each named image of a row: ``image`` is ``row.image``, ``image_<phase>``
    the row's column of that name (header names matched case-insensitively).

    Raises:
        InputError: naming the case's image: a column is missing or empty in this row.
    """
    from livercad.domain import extra_value

    out = [Path(row.image)]
    for name in names[1:]:
        value = extra_value(row.extra, name.lower())
        if not value:
            raise InputError(row.image, f"case '{row.case_id}' has no '{name}' image, which the model takes "
                                        f"(images: {', '.join(names)}): fill a manifest column '{name}', or give a "
                                        "4-D NIfTI with data.channels_axis / --channels-axis")
        out.append(Path(value))
    return out


def check_grid(first: Volume, other: Volume, name: str) -> None:
    """Raise when ``other`` (the image ``name``) does not lie on ``first``'s grid.

    Raises:
        InputError: naming both files: the shapes differ, or an affine element differs by more than
            :data:`GRID_ATOL` mm.
    """
    if other.shape != first.shape:
        raise InputError(other.path, f"image '{name}' has shape {other.shape}, the case's image {first.path} "
                                     f"{first.shape}: the images of a case must share one grid")
    diff = float(np.max(np.abs(np.asarray(other.affine) - np.asarray(first.affine))))
    if diff > GRID_ATOL:
        raise InputError(other.path, f"image '{name}': affine differs from that of the case's image {first.path} "
                                     f"by {diff:.3g} mm (> {GRID_ATOL} mm): the images of a case must share one grid "
                                     "(resample them first)")


def with_channels(first: Volume, others: Sequence[Volume], names: Sequence[str]) -> Volume:
    """``first`` carrying ``others`` (the images ``names[1:]``) as its channels, after :func:`check_grid`."""
    for name, other in zip(names[1:], others, strict=True):
        check_grid(first, other, name)
    return replace(first, channels=tuple(np.asarray(v.data, dtype=np.float32) for v in others))


def split_channels(volumes: Sequence[Volume], names: Sequence[str]) -> Volume:
    """The channels of a 4-D NIfTI (:func:`~livercad.io.nifti.load_channels`) as the model's images ``names``.

    Raises:
        InputError: naming the file: its number of channels is not the number of images.
    """
    if len(volumes) != len(names):
        first = volumes[0]
        raise InputError(first.path, f"{len(volumes)} channel(s) along the 4th axis, the model takes "
                                     f"{len(names)} image(s) ({', '.join(names)})")
    return with_channels(volumes[0], volumes[1:], names)


def load_images(row: ManifestRow, names: Sequence[str], load: Callable[[Path], Volume], *,
                channels_axis: bool = False, first: Volume | None = None) -> Volume:
    """A case's images ``names`` as one :class:`Volume` (see the module docstring).

    Args:
        row: the case's record.
        names: the model's images, ``image`` first.
        load: the reader of one image path (e.g. :func:`livercad.io.image.load_image`).
        channels_axis: a 4-D NIfTI ``image`` holds every image along its 4th axis.
        first: the case's image when already read (``row.image`` is not read again).

    Raises:
        InputError: naming a file: a missing column, a wrong number of channels, images on different grids,
            or an unreadable file.
    """
    from livercad.io.image import image_kind

    if channels_axis and first is None and image_kind(row.image) == "nifti":
        from livercad.io.nifti import load_channels

        volumes = load_channels(row.image)
        if len(volumes) > 1 or len(names) == 1:
            return split_channels(volumes, names)
        first = volumes[0]
    paths = image_paths(row, names)
    base = first if first is not None else load(paths[0])
    if len(names) == 1:
        return base
    return with_channels(base, [load(p) for p in paths[1:]], names)


__all__ = ["GRID_ATOL", "check_grid", "image_paths", "load_images", "split_channels", "with_channels"]
