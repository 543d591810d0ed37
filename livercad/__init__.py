"""livercad: liver segmentation -> classification pipeline with segmentation-impact ablations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from livercad.errors import CheckpointError, ConfigError, InputError, LivercadError
from livercad.types import CaseResult, Segmentation, Volume

if TYPE_CHECKING:  # the real function imports torch (~1.5 s); ``import livercad`` stays light
    from livercad.config import Config
    from livercad.pipeline.run import PipelineResult

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


def run_pipeline(inputs: str | Path | Sequence[str | Path], output_dir: str | Path, *,
                 model: str | Path | None = None, config: Config | str | Path | None = None,
                 resume: bool = False, progress: bool = True, split: str | None = None,
                 engine: str | None = None, address: str | None = None,
                 modality: str | None = None) -> PipelineResult:
    """Segment (and, with a classifier in the bundle, classify) every input case.

    The same function as :func:`livercad.pipeline.run.run_pipeline` (imported on first call).

    Args:
        inputs: a folder of NIfTI files, one file, a list of files, or a manifest CSV (then ground-truth
            masks and labels are used for evaluation, and its ``modality`` column per case).
        output_dir: where masks/, qc/, predictions.csv, failures.csv, metrics.json, run.json and
            report.html go.
        model: a bundle directory (``livercad train pipeline`` or ``livercad demo`` make one); ``None``:
            the default model shipped with the package (``make model`` installs it).
        config: optional config (object or YAML) whose ``inference`` section overrides the bundle's.
        resume: skip cases whose record shows they already finished in ``output_dir``.
        progress: progress bar on a terminal / log lines otherwise.
        split: with a manifest, only rows of this split.
        engine: ``local`` (default) or ``ray``; ``address``: Ray cluster address.
        modality: the modality of cases whose record names none (``ct``, ``mr``, ``mr-t2``, ``us`` ...);
            ``None``: decided from each image's intensities.

    Returns:
        A :class:`~livercad.pipeline.run.PipelineResult`.

    Raises:
        CheckpointError: the bundle is missing or corrupt (or ``model=None`` and no default is installed).
        ConfigError: ``modality`` is not a known modality name.
    """
    from livercad.pipeline.run import run_pipeline as _run

    return _run(inputs, output_dir, model=model, config=config, resume=resume, progress=progress, split=split,
                engine=engine, address=address, modality=modality)
