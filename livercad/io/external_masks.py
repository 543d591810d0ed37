"""Organ masks made by other tools (TotalSegmentator, nnU-Net, ...), read by structure name.

Three forms are understood, per case:

* **one file per structure** (TotalSegmentator's default output layout): ``<root>/<case_id>/liver.nii.gz``,
  or ``<root>/<case_id>/segmentations/liver.nii.gz``; the file is binary, any value > 0 is the structure;
* **one multi-label file** ``<root>/<case_id>.nii.gz`` (TotalSegmentator ``--ml``, nnU-Net predictions),
  whose label values are named by a label map: the built-in ``total`` or ``total_mr`` (TotalSegmentator's
  tasks), or an nnU-Net ``dataset.json`` (its ``labels`` entry, ``{"liver": 1}`` or ``{"1": "liver"}``);
* an explicit file per case (a manifest column): a binary file, or a multi-label file with a label map.

The mask must lie on the image's own grid (same shape, affines equal within 1e-4): masks from another tool
are never resampled, so a mismatch is a one-line :class:`~livercad.errors.InputError` naming the mask file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livercad.errors import ConfigError, InputError
from livercad.io.manifest import ManifestRow
from livercad.io.nifti import load_labels, select_labels
from livercad.types import Volume

#: The label values shared by TotalSegmentator v2's ``total`` (CT) and ``total_mr`` tasks for the abdominal
#: organs livercad uses (checked on outputs of the tool itself: liver 5, spleen 1,
#: kidneys 2 and 3). Other structures are reached through a ``dataset.json`` label map or a per-structure file.
_TOTALSEG_ABDOMEN = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5,
                     "stomach": 6, "pancreas": 7}
LABEL_MAPS: dict[str, dict[str, int]] = {"total": dict(_TOTALSEG_ABDOMEN), "total_mr": dict(_TOTALSEG_ABDOMEN)}
_NII = (".nii.gz", ".nii")


def label_map(spec: str | Path) -> dict[str, int]:
    """A structure-name → label-value map: a built-in name (``total``, ``total_mr``) or a ``dataset.json``.

    Raises:
        ConfigError: for an unknown built-in name that is not a file either.
        InputError: naming the ``dataset.json`` when it is unreadable or has no usable ``labels``.

    Example:
        >>> label_map("total")["liver"], label_map("total_mr")["spleen"]
        (5, 1)
    """
    if str(spec) in LABEL_MAPS:
        return dict(LABEL_MAPS[str(spec)])
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"label map {spec!r} is neither a built-in map ({', '.join(LABEL_MAPS)}) nor a file")
    from livercad.io.convert import label_pairs
    from livercad.io.convert_public import read_json

    labels = read_json(path).get("labels")
    pairs = label_pairs(labels) if isinstance(labels, Mapping) else []
    named = {name.lower(): values[0] for name, values in pairs if len(values) == 1 and values[0] > 0}
    if not named:
        raise InputError(path, "no 'labels' mapping of structure names to label values")
    return named


@dataclass(frozen=True)
class ExternalMasks:
    """Where another tool's masks are, and how to read a structure from them.

    Attributes:
        root: a folder of per-case outputs (either layout above) or, with ``files``, unused.
        labels: the label map for multi-label files (``None``: multi-label files cannot be read by name).
        files: per-case explicit files (``case_id → path``), e.g. from a manifest column; they win over ``root``.
        tool: a short name for records and reports (``totalsegmentator``, ``nnunet``, ``external``).
    """

    root: Path | None = None
    labels: Mapping[str, int] | None = None
    files: Mapping[str, Path] | None = None
    tool: str = "external"

    def source(self, case_id: str, structure: str) -> tuple[Path, int | None]:
        """The file holding ``structure`` for ``case_id``, and its label value (``None``: a binary file).

        Raises:
            InputError: naming the expected place when no file is there, or the file when its label map
                does not name the structure.
        """
        explicit = (self.files or {}).get(case_id)
        if explicit is not None:
            return Path(explicit), self._value(Path(explicit), structure, binary_ok=True)
        if self.root is None:
            raise InputError(Path(case_id), "no external mask given for this case")
        for folder in (self.root / case_id, self.root / case_id / "segmentations"):
            hit = next((folder / f"{structure}{e}" for e in _NII if (folder / f"{structure}{e}").is_file()), None)
            if hit is not None:
                return hit, None
        multi = next((self.root / f"{case_id}{e}" for e in _NII if (self.root / f"{case_id}{e}").is_file()), None)
        if multi is None:
            raise InputError(self.root / case_id, f"no {structure}.nii.gz in the case folder and no "
                                                  f"{case_id}.nii.gz multi-label file in {self.root}")
        return multi, self._value(multi, structure, binary_ok=False)

    def _value(self, path: Path, structure: str, *, binary_ok: bool) -> int | None:
        if self.labels is None:
            if binary_ok and structure == "liver":  # a binary file given for a case is its liver
                return None
            if binary_ok:
                raise InputError(path, f"a binary mask holds the liver only, not {structure!r}")
            raise InputError(path, f"a multi-label file needs a label map to find {structure!r} "
                                   f"(built-in: {', '.join(LABEL_MAPS)}, or an nnU-Net dataset.json)")
        if structure not in self.labels:
            raise InputError(path, f"the label map names no {structure!r} (it has {', '.join(sorted(self.labels))})")
        return int(self.labels[structure])

    def load(self, case_id: str, volume: Volume, structure: str = "liver") -> np.ndarray:
        """``structure``'s mask of ``case_id`` as a bool array on ``volume``'s grid (never resampled).

        Raises:
            InputError: naming the mask file when it is missing or unreadable, or its shape or affine differs
                from the image's.
        """
        return self.structures(case_id, volume, (structure,))[structure]  # type: ignore[return-value]

    def structures(self, case_id: str, volume: Volume, names: Sequence[str] = ("liver", "spleen")
                   ) -> dict[str, np.ndarray | None]:
        """The masks of ``names`` for ``case_id``, each file read once (one multi-label file holds them all).

        The first name is required (as :meth:`load`); a later one this source does not have is ``None`` (a
        spleen, for statistics).

        Raises:
            InputError: as :meth:`load`, for the first name, or for any file that is there but unusable.
        """
        sources: dict[str, tuple[Path, int | None] | None] = {}
        for i, name in enumerate(names):
            try:
                sources[name] = self.source(case_id, name)
            except InputError:
                if i == 0:
                    raise
                sources[name] = None
        files = {s[0]: load_labels(s[0], volume) for s in sources.values() if s is not None}
        return {name: None if s is None else select_labels(files[s[0]], None if s[1] is None else (s[1],))
                for name, s in sources.items()}


def external_masks(root: str | Path | None = None, *, labels: str | Path | None = None,
                   files: Mapping[str, str | Path] | None = None, tool: str = "external") -> ExternalMasks:
    """An :class:`ExternalMasks` from user arguments (``labels``: a built-in map name or a ``dataset.json``).

    Raises:
        InputError: naming ``root`` when it is given and not a folder.
        ConfigError: when neither ``root`` nor ``files`` is given, or the label map is unknown.
    """
    if root is None and not files:
        raise ConfigError("external masks need a folder or per-case files")
    if root is not None and not Path(root).is_dir():
        raise InputError(Path(root), "external mask folder not found")
    return ExternalMasks(root=None if root is None else Path(root),
                         labels=None if labels is None else label_map(labels),
                         files={k: Path(v) for k, v in (files or {}).items()} or None, tool=tool)


def masks_from_config(spec: str | Path | None, labels: str | Path | None, rows: Sequence[ManifestRow] = ()
                      ) -> ExternalMasks | None:
    """The external masks a setting names (``data.external_masks``, ``--masks``): a folder; ``manifest`` (each
    row's ``external_mask`` column); ``None`` when unset or ``degraded:<dice>`` (made from the ground truth by
    the ablation, not read from files).

    Raises:
        ConfigError: ``manifest`` but no row has an ``external_mask``; an unknown label map.
        InputError: a folder that does not exist.
    """
    if spec is None or str(spec).startswith("degraded:"):
        return None
    if str(spec) == "manifest":
        files = {r.case_id: r.extra["external_mask"] for r in rows if r.extra.get("external_mask")}
        if not files:
            raise ConfigError("external masks 'manifest': no row has an external_mask column value")
        return external_masks(files=files, labels=labels, tool="manifest")
    tool = "totalsegmentator" if str(labels) in ("total", "total_mr") else "external"
    return external_masks(spec, labels=labels, tool=tool)


__all__ = ["LABEL_MAPS", "ExternalMasks", "external_masks", "label_map", "masks_from_config"]
