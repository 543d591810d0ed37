"""Safe model checkpoints shared by both stages.

A livercad checkpoint is a torch file holding only tensors and JSON: ``{"format": ..., "state_dict":
{name: Tensor}, "meta": "<json text>"}``. It is written atomically (a reader never sees half a file)
and read back with ``torch.load(weights_only=True)``, so loading never unpickles arbitrary objects: a
crafted pickle that would run code is refused with a :class:`~livercad.errors.CheckpointError`
naming the file. The sha256 of the file is recorded in the returned meta (``checkpoint.sha256``).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> p = save_checkpoint(Path(tempfile.mkdtemp()) / "m.pt", {"w": torch.ones(2)}, {"arch": "Unet"})
    >>> state, meta = load_checkpoint(p)
    >>> state["w"].tolist(), meta["arch"], len(meta["checkpoint"]["sha256"])
    ([1.0, 1.0], 'Unet', 64)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from livercad.errors import CheckpointError
from livercad.io.atomic import atomic_write
from livercad.runtime.weights import sha256_file

logger = logging.getLogger(__name__)

FORMAT = "livercad-checkpoint/1"


def _meta_json(meta: Mapping[str, Any], path: Path) -> str:
    try:
        return json.dumps(dict(meta), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint meta must hold only JSON values ({exc})") from None


def _tensors(state_dict: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {key!r} is {type(value).__name__}, expected a tensor")
        out[key] = value.detach().cpu().contiguous()
    return out


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Atomically write a checkpoint holding only tensors and JSON metadata.

    Args:
        path: destination file (parents are created).
        state_dict: parameter name -> tensor (moved to CPU).
        meta: JSON-serialisable metadata (config, preprocessing, provenance, history, versions).

    Returns:
        The written path.

    Raises:
        CheckpointError: a non-tensor state entry or non-JSON meta.
    """
    p = Path(path)
    payload = {"format": FORMAT, "state_dict": _tensors(state_dict, p), "meta": _meta_json(meta, p)}
    atomic_write(p, lambda tmp: torch.save(payload, tmp))
    logger.info("saved checkpoint %s (%d tensors)", p, len(payload["state_dict"]))
    return p


def _check_payload(obj: Any, p: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{p}: not a livercad checkpoint (expected format '{FORMAT}', got {found!r})")
    state, meta_text = obj.get("state_dict"), obj.get("meta")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: corrupt checkpoint: 'state_dict' is not a mapping of tensors")
    try:
        meta = json.loads(meta_text)
    except (TypeError, ValueError):
        raise CheckpointError(f"{p}: corrupt checkpoint: 'meta' is not JSON text") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: corrupt checkpoint: 'meta' is {type(meta).__name__}, expected an object")
    return state, meta


def torch_load_safe(path: str | Path, *, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never arbitrary objects.

    Raises:
        CheckpointError: missing file, or an unsafe (code execution refused) or corrupt one; ``what`` names it.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unsafe or corrupt file
        reason = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{p}: refused to load {what} (not a safe livercad checkpoint: "
                              f"{type(exc).__name__}: {reason})") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` without unpickling arbitrary objects.

    Args:
        path: the checkpoint file.

    Returns:
        ``(state_dict, meta)``; ``meta["checkpoint"]`` holds ``{"path", "sha256"}`` of the file read.

    Raises:
        CheckpointError: missing file, unsafe pickle (code execution refused), corrupt or foreign content.
    """
    p = Path(path)
    state, meta = _check_payload(torch_load_safe(p), p)
    meta["checkpoint"] = {"path": str(p.resolve()), "sha256": sha256_file(p)}
    return state, meta


__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint", "torch_load_safe"]
