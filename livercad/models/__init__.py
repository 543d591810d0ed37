"""Models that ship inside the package: the default stage-1 liver bundle (``make model`` builds it).

Example:
    >>> default_bundle_path().name
    'liver'
"""

from __future__ import annotations

from pathlib import Path

from livercad.errors import CheckpointError

#: Where the default stage-1 bundle lives inside the installed package.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "liver"


def default_bundle_path() -> Path:
    """The stage-1 bundle shipped with the package (trained on the phantom only; see its ``MODEL_CARD.md``)."""
    return DEFAULT_BUNDLE


def segmenter_checkpoint(spec: str | Path) -> Path:
    """The ``segmenter.pt`` a spec names: ``default`` (the shipped model), a bundle folder, or the file itself.

    Raises:
        CheckpointError: nothing is there (for ``default``: the model is not installed, build it with
            ``make model``).
    """
    if str(spec) == "default":
        path = default_bundle_path() / "segmenter.pt"
        if not path.is_file():
            raise CheckpointError(f"{path}: the default liver model is not installed; build it with 'make model' "
                                  "or give a trained segmenter.pt / bundle folder instead")
        return path
    p = Path(spec)
    path = p / "segmenter.pt" if p.is_dir() else p
    if not path.is_file():
        raise CheckpointError(f"{p}: no segmenter checkpoint there (expected a segmenter.pt or a bundle folder)")
    return path
