"""livercad: liver segmentation -> classification pipeline with segmentation-impact ablations."""

from __future__ import annotations

from typing import Any

from livercad.errors import CheckpointError, ConfigError, InputError, LivercadError
from livercad.types import CaseResult, Segmentation, Volume

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "run_pipeline",
    "Volume",
    "Segmentation",
    "CaseResult",
    "LivercadError",
    "InputError",
    "ConfigError",
    "CheckpointError",
]


def run_pipeline(*args: Any, **kwargs: Any) -> Any:
    """Run segmentation + classification on NIfTI inputs; see :func:`livercad.pipeline.run.run_pipeline`."""
    from livercad.pipeline.run import run_pipeline as _run

    return _run(*args, **kwargs)
