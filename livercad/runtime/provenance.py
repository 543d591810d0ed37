"""What a trained model or a run records about the software that made it.

Example:
    >>> v = versions()
    >>> {"livercad", "python", "torch", "smp", "monai", "lightning"} <= set(v)
    True
"""

from __future__ import annotations

import importlib
import platform
from importlib.metadata import PackageNotFoundError, version

#: Recorded name -> distribution: the package and the libraries that shape its numbers.
LIBRARIES = {
    "livercad": "livercad", "torch": "torch", "torchvision": "torchvision", "smp": "segmentation-models-pytorch",
    "timm": "timm", "monai": "monai", "lightning": "lightning", "numpy": "numpy", "scikit-learn": "scikit-learn",
}
# read from __version__: livercad may run from a source tree, torch's names the build (+cpu, +cu130)
_FROM_MODULE = ("livercad", "torch", "torchvision")


def _version(name: str, dist: str) -> str:
    try:
        if name in _FROM_MODULE:
            return str(importlib.import_module(name).__version__)
        return version(dist)
    except (PackageNotFoundError, ImportError):
        return "not installed"


def versions() -> dict[str, str]:
    """Versions of livercad, Python, the platform and the libraries of :data:`LIBRARIES`.

    The one record written into checkpoints (both stages), ``bundle.json`` and ``run.json``.
    """
    return {**{name: _version(name, dist) for name, dist in LIBRARIES.items()},
            "python": platform.python_version(), "platform": platform.platform()}


__all__ = ["LIBRARIES", "versions"]
