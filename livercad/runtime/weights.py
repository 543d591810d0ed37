"""Pretrained-weight resolution: local caches first, then the libraries' own download, once.

``spec`` is ``none`` (random init), ``imagenet`` or a path to a ``.pth``/``.pt``/``.safetensors`` file. ``imagenet``
is looked up, in order, in ``$LIVERCAD_WEIGHTS_DIR`` (``<name>.safetensors``, ``<name>.pth``), the Hugging Face hub
cache (smp >= 0.5 encoders: ``smp-hub/<name>.imagenet`` at smp's pinned revision, then ``main``; timm models) and the
torch hub cache (``$TORCH_HOME/hub/checkpoints``: torchvision files, older smp). When none has it, it is downloaded
the way the library would (see :mod:`livercad.runtime.download`): torchvision and older smp through
``torch.hub.load_state_dict_from_url`` (progress bar, sha256 prefix checked), smp >= 0.5 and timm through
``huggingface_hub.hf_hub_download`` (progress bar, sha256 checked against the LFS ETag), into those same caches.

Environment:
    ``LIVERCAD_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: never connect; a missing file fails at once.
    ``LIVERCAD_WEIGHTS_URL``: a base URL (mirror, test server) replacing the libraries' host, the file name kept:
    ``$LIVERCAD_WEIGHTS_URL/resnet50-11ad3fa6.pth`` for torch files,
    ``$LIVERCAD_WEIGHTS_URL/smp-hub/resnet34.imagenet/resolve/<revision>/model.safetensors`` for Hub files.
    ``LIVERCAD_WEIGHTS_DIR``: a folder of ``<name>.safetensors``/``<name>.pth`` looked at first.

Without a route to the server (probe of 3 s, DNS included) or when offline, a :class:`WeightsUnavailableError` (a
``CheckpointError``) says in one line which file to place in which folder. :func:`ensure_weights` does all of this
up front, before any data work; :func:`resolve_weights` also returns the state dict.

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

from livercad.errors import CheckpointError, ConfigError, WeightsUnavailableError  # noqa: F401 - documented here
from livercad.runtime.download import HF_HOST, Remote, fetch, hf_cache_dir

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


def _torchvision_url(name: str) -> str | None:
    try:
        from torchvision.models import get_model_weights

        return str(get_model_weights(name).DEFAULT.url)
    except (ValueError, KeyError, AttributeError):
        return None


def _torch_remote(url: str | None) -> Remote | None:
    return Remote("torch", url.rsplit("/", 1)[-1], url) if url else None


def _smp_remote(name: str) -> Remote | None:
    try:
        from segmentation_models_pytorch.encoders import encoders

        settings = encoders[name]["pretrained_settings"]["imagenet"]
    except (ImportError, KeyError, TypeError):
        return None
    if settings.get("repo_id"):  # smp >= 0.5: the Hugging Face Hub at a pinned revision
        repo, rev = settings["repo_id"], settings.get("revision")
        return Remote("hf", "model.safetensors", f"{HF_HOST}/{repo}/resolve/{rev or 'main'}/model.safetensors",
                      repo, rev)
    return _torch_remote(settings.get("url"))  # older smp: a torch.hub URL


def _timm_remote(name: str) -> Remote | None:
    try:
        import timm

        cfg = timm.models.get_pretrained_cfg(name)
    except (ImportError, RuntimeError, ValueError, KeyError):
        return None
    if cfg is not None and cfg.hf_hub_id:
        repo = cfg.hf_hub_id
        return Remote("hf", "model.safetensors", f"{HF_HOST}/{repo}/resolve/main/model.safetensors", repo)
    return _torch_remote(cfg.url if cfg is not None else None)


def imagenet_remote(family: str, name: str) -> Remote | None:
    """Where the library itself would download ImageNet weights for ``name`` from (``None``: nowhere known)."""
    if family == "smp":
        return _smp_remote(name)
    if family == "timm" and not name.startswith("tv_"):
        return _timm_remote(name) or _torch_remote(_torchvision_url(name))
    return _torch_remote(_torchvision_url(name.replace("tv_", "")))


def _hf_cached(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm/smp
        return None
    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_cache_dir()), revision=revision)
    return Path(found) if isinstance(found, str) else None


def imagenet_candidates(family: str, name: str) -> list[Path]:
    """Every local place where ImageNet weights for ``name`` are looked for, in order."""
    places: list[Path | None] = []
    own = os.environ.get("LIVERCAD_WEIGHTS_DIR")
    if own:
        places += [Path(own) / f"{name}.safetensors", Path(own) / f"{name}.pth"]
    remote = imagenet_remote(family, name)
    if remote is not None and remote.route == "hf":  # the library's pinned revision, then whatever main points to
        places += [_hf_cached(str(remote.repo_id), remote.filename, remote.revision),
                   _hf_cached(str(remote.repo_id), remote.filename)]
    if family == "timm":
        places += [_hf_cached(repo, "model.safetensors")
                   for repo in (f"timm/{name}.a1_in1k", f"timm/{name}.tv_in1k", f"timm/{name}")]
    for r in (remote, _torch_remote(_torchvision_url(name.replace("tv_", "")))):
        if r is not None and r.route == "torch":
            places.append(r.folder() / r.filename)  # type: ignore[operator]
    return list(dict.fromkeys(p for p in places if p is not None))


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


def _imagenet_file(family: str, name: str) -> Path:
    candidates = imagenet_candidates(family, name)
    for c in candidates:
        if c.is_file():
            return c
    remote = imagenet_remote(family, name)
    if remote is not None:
        return fetch(remote, name)  # WeightsUnavailableError when offline / no route / failed
    where = ", ".join(str(c) for c in candidates) or "$LIVERCAD_WEIGHTS_DIR/<name>.pth"
    raise CheckpointError(
        f"ImageNet weights for '{name}' are not available offline and no download source is known; place the file "
        f"at one of: {where} (or set LIVERCAD_WEIGHTS_DIR, or pass a file path as the weights, or use 'none')"
    )


def _weights_file(spec: str, family: str, name: str) -> tuple[Path | None, str]:
    if family not in FAMILIES:
        raise ConfigError(f"unknown weights family '{family}'; expected one of {', '.join(FAMILIES)}")
    key = (spec or "none").strip()
    if key.lower() in ("none", "random", "null", ""):
        return None, "random"
    if key.lower() == "imagenet":
        return _imagenet_file(family, name), "imagenet"
    path = Path(key).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    return path, "file"


def ensure_weights(spec: str, *, family: str, name: str, check: bool = True) -> WeightsInfo:
    """Resolve a weights spec up front, downloading ImageNet weights on first use; nothing is built.

    Call it before any data work so that a missing file or an offline machine fails in seconds; the later
    :func:`resolve_weights` then finds the file in the cache without touching the network.

    Args:
        spec: ``none`` | ``imagenet`` | path to a weights file.
        family: ``smp`` (an smp encoder name), ``torchvision`` or ``timm``.
        name: the encoder/backbone name, e.g. ``resnet34``.
        check: also load the file once to prove it is a readable state dict.

    Returns:
        The provenance, with the local path and sha256 of the file (``source='random'`` for ``none``).

    Raises:
        WeightsUnavailableError: ImageNet weights neither cached nor downloadable (offline, no route, bad download).
        CheckpointError: a file that is missing or not a state dict. ConfigError: unknown family.
    """
    path, source = _weights_file(spec, family, name)
    if path is None:
        return WeightsInfo("random")
    if check:
        load_state_file(path)
    return WeightsInfo(source, str(path if source == "imagenet" else path.resolve()), sha256_file(path))


def resolve_weights(
    spec: str, *, family: str, name: str
) -> tuple[dict[str, torch.Tensor] | None, WeightsInfo]:
    """Resolve a weights spec to a state dict and its provenance (ImageNet weights: cache first, then download).

    Args:
        spec: ``none`` | ``imagenet`` | path to a weights file.
        family: ``smp`` (an smp encoder name), ``torchvision`` or ``timm``.
        name: the encoder/backbone name, e.g. ``resnet34``.

    Returns:
        ``(state_dict or None, WeightsInfo)``.

    Raises:
        WeightsUnavailableError: ImageNet weights neither cached nor downloadable (a :class:`CheckpointError`).
        CheckpointError: the file is missing, unreadable or unsafe.
        ConfigError: unknown family.
    """
    path, source = _weights_file(spec, family, name)
    if path is None:
        return None, WeightsInfo("random")
    state = load_state_file(path)
    return state, WeightsInfo(source, str(path if source == "imagenet" else path.resolve()), sha256_file(path))
