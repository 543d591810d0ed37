"""livercad.io: NIfTI reading/writing, atomic writes, manifests and dataset converters.

The NIfTI functions are re-exported lazily (``from livercad.io import load_volume`` works) so that
importing a light submodule such as :mod:`livercad.io.atomic` does not import nibabel.

Example:
    >>> from livercad.io import load_volume, save_mask
    >>> load_volume.__module__, save_mask.__module__
    ('livercad.io.nifti', 'livercad.io.nifti_write')
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load_volume": "livercad.io.nifti",
    "load_mask": "livercad.io.nifti",
    "save_mask": "livercad.io.nifti_write",
    "save_volume": "livercad.io.nifti_write",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a re-exported NIfTI function on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'livercad.io' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
