"""livercad: liver segmentation -> classification pipeline with segmentation-impact ablations.

``livercad.run_pipeline`` is :func:`livercad.pipeline.predict.run.run_pipeline` itself (its real signature and
docstring), imported on first access so that ``import livercad`` stays light (the pipeline imports torch).
"""

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


def __getattr__(name: str) -> Any:
    """Lazy attributes (PEP 562): ``run_pipeline`` comes from :mod:`livercad.pipeline.predict.run` on first use."""
    if name == "run_pipeline":
        from livercad.pipeline.predict.run import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'livercad' has no attribute {name!r}")
