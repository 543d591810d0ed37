"""Pretrained-weight resolution that never touches the network.

``spec`` is ``none`` (random init), ``imagenet`` (looked up in the local caches that smp, timm and
torchvision use, or in ``$LIVERCAD_WEIGHTS_DIR``) or a path to a ``.pth``/``.pt``/``.safetensors`` file.
When ImageNet weights are not on disk this fails at once with a message naming the file to place and
where; nothing is downloaded, ever (no hub call is made at all).

Example:
    >>> state, info = resolve_weights("none", family="torchvision", name="resnet50")
    >>> state is None, info.to_dict()["source"]
    (True, 'random')
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from livercad.errors import CheckpointError, ConfigError

FAMILIES = ("smp", "torchvision", "timm")


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of a model's initial weights (recorded in checkpoints and reports)."""

    source: str  # random | imagenet | file
    path: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """Plain dict for JSON."""
        return asdict(self)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _torchvision_filename(name: str) -> str | None:
    try:
        from torchvision.models import get_model_weights

        return get_model_weights(name).DEFAULT.url.rsplit("/", 1)[-1]
    except (ValueError, KeyError, AttributeError):
        return None


def _hf_cached(repo_id: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm/smp
        return None
    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def imagenet_candidates(family: str, name: str) -> list[Path]:
    """Every local place where ImageNet weights for ``name`` are looked for, in order."""
    places: list[Path] = []
    own = os.environ.get("LIVERCAD_WEIGHTS_DIR")
    if own:
        places += [Path(own) / f"{name}.safetensors", Path(own) / f"{name}.pth"]
    if family == "smp":
        hf = _hf_cached(f"smp-hub/{name}.imagenet", "model.safetensors")
        if hf is not None:
            places.append(hf)
    if family == "timm":
        for repo in (f"timm/{name}.a1_in1k", f"timm/{name}.tv_in1k", f"timm/{name}"):
            hf = _hf_cached(repo, "model.safetensors")
            if hf is not None:
                places.append(hf)
    tv_file = _torchvision_filename(name.replace("tv_", ""))
    if tv_file:
        places.append(Path(torch.hub.get_dir()) / "checkpoints" / tv_file)
    return places


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch file, never unpickling arbitrary objects."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: weights file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad weights file
        raise CheckpointError(f"{p}: cannot load weights safely ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: expected a state dict of tensors")
    return state


def resolve_weights(
    spec: str, *, family: str, name: str
) -> tuple[dict[str, torch.Tensor] | None, WeightsInfo]:
    """Resolve a weights spec to a state dict and its provenance, offline.

    Args:
        spec: ``none`` | ``imagenet`` | path to a weights file.
        family: ``smp`` (an smp encoder name), ``torchvision`` or ``timm``.
        name: the encoder/backbone name, e.g. ``resnet34``.

    Returns:
        ``(state_dict or None, WeightsInfo)``.

    Raises:
        CheckpointError: ImageNet weights are not on disk, or the file is unreadable/unsafe.
        ConfigError: unknown family.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown weights family '{family}'; expected one of {', '.join(FAMILIES)}")
    key = (spec or "none").strip()
    if key.lower() in ("none", "random", "null", ""):
        return None, WeightsInfo("random")
    if key.lower() == "imagenet":
        candidates = imagenet_candidates(family, name)
        for c in candidates:
            if c.is_file():
                return load_state_file(c), WeightsInfo("imagenet", str(c), sha256_file(c))
        where = ", ".join(str(c) for c in candidates) or "$LIVERCAD_WEIGHTS_DIR/<name>.pth"
        if family == "smp":
            where += f" or the Hugging Face cache of smp-hub/{name}.imagenet (model.safetensors)"
        raise CheckpointError(
            f"ImageNet weights for '{name}' are not available offline; place the file at one of: {where} "
            f"(or set LIVERCAD_WEIGHTS_DIR, or pass a file path as the weights, or use 'none')"
        )
    path = Path(key).expanduser()
    return load_state_file(path), WeightsInfo("file", str(path.resolve()), sha256_file(path))
