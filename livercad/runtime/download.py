"""First-use download of pretrained weights, through the libraries' own download code.

Two routes, chosen by where the library itself gets the file (see :func:`livercad.runtime.weights.imagenet_remote`):

* ``torch``: :func:`torch.hub.load_state_dict_from_url` (``progress=True``, ``check_hash=True``: the sha256 prefix
  in the file name is verified, ``weights_only=True``) into ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub``).
* ``hf``: :func:`huggingface_hub.hf_hub_download` at the library's pinned revision into the Hugging Face hub cache
  (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), then the file is checked against its blob name (the LFS sha256).

Before any download a TCP probe of the server (or of the proxy urllib/httpx would use) must answer within
:data:`PROBE_TIMEOUT_S` (DNS included), so that no route fails in seconds instead of hanging in a library retry loop;
the torch route also runs under a socket timeout. ``LIVERCAD_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` fail before any
connection. ``LIVERCAD_WEIGHTS_URL`` (a base URL: mirror or test server) replaces the libraries' host, the file name
kept: torch files come from ``$LIVERCAD_WEIGHTS_URL/<file>``, Hub files from
``$LIVERCAD_WEIGHTS_URL/<repo>/resolve/<revision>/<file>`` (the ``HF_ENDPOINT`` layout; ``HF_ENDPOINT`` itself is
honoured when ``LIVERCAD_WEIGHTS_URL`` is not set).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from livercad.errors import CheckpointError, WeightsUnavailableError

PROBE_TIMEOUT_S = 3.0  # DNS + TCP connect to the server; keeps "no route" well under 5 s
READ_TIMEOUT_S = 30.0  # socket timeout while torch.hub downloads (urllib has none of its own)
HF_HOST = "https://huggingface.co"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Remote:
    """Where a library downloads a weights file from, and where its cache keeps it."""

    route: str  # torch | hf
    filename: str
    url: str  # the library's own URL (before LIVERCAD_WEIGHTS_URL)
    repo_id: str | None = None
    revision: str | None = None  # hf: a commit hash when the library pins one

    def source_url(self) -> str:
        """The URL actually fetched, after ``LIVERCAD_WEIGHTS_URL``/``HF_ENDPOINT``."""
        if self.route == "hf":
            return f"{hf_endpoint()}/{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename}"
        base = os.environ.get("LIVERCAD_WEIGHTS_URL", "").strip().rstrip("/")
        return f"{base}/{self.filename}" if base else self.url

    def folder(self) -> Path | None:
        """The exact cache folder the file lands in (``None``: an unpinned Hub revision, no fixed folder)."""
        if self.route == "torch":
            import torch

            return Path(torch.hub.get_dir()) / "checkpoints"
        if self.revision is None or not re.fullmatch(r"[0-9a-f]{40}", self.revision):
            return None
        return hf_cache_dir() / ("models--" + str(self.repo_id).replace("/", "--")) / "snapshots" / self.revision


def hf_endpoint() -> str:
    """The Hub endpoint: ``$LIVERCAD_WEIGHTS_URL``, else ``$HF_ENDPOINT``, else huggingface.co."""
    url = os.environ.get("LIVERCAD_WEIGHTS_URL", "").strip() or os.environ.get("HF_ENDPOINT", "").strip()
    return (url or HF_HOST).rstrip("/")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline_reason() -> str | None:
    """Why downloads are off (``LIVERCAD_OFFLINE``/``HF_HUB_OFFLINE`` set true), or ``None``."""
    for var in ("LIVERCAD_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var}={os.environ[var].strip()} is set"
    return None


def _first_hop(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or 80
    return host, port


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s server (or proxy) cannot be reached within ``timeout`` s, DNS included; ``None`` if it can."""
    host, port = _first_hop(url)
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure means no route
            outcome.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")

    probe = threading.Thread(target=attempt, name="livercad-weights-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if not outcome:
        return f"no route to {host}:{port} (no answer within {timeout:g} s)"
    return None if outcome[0] is None else f"no route to {host}:{port} ({outcome[0]})"


def unavailable_message(remote: Remote, name: str, reason: str) -> str:
    """One line: what is missing, why, the file to place and the exact folder to place it in."""
    ext = Path(remote.filename).suffix or ".pth"
    own = os.environ.get("LIVERCAD_WEIGHTS_DIR") or "$LIVERCAD_WEIGHTS_DIR"
    folder = remote.folder()
    place = (f"place the file {remote.filename} (from {remote.url}) in {folder}/" if folder is not None
             else f"place the file {remote.filename} (from {remote.url}) as {own}/{name}{ext}")
    alt = f"or as {own}/{name}{ext}; " if folder is not None else ""
    return (f"ImageNet weights for '{name}' are not available offline and cannot be downloaded ({reason}); "
            f"{place} ({alt}or set LIVERCAD_WEIGHTS_URL to a mirror, pass a weights file path, or use 'none')")


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    if old is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        if old is None:
            socket.setdefaulttimeout(None)


def _fetch_torch(remote: Remote) -> Path:
    import torch

    folder = remote.folder()
    assert folder is not None
    with _socket_timeout(READ_TIMEOUT_S):
        torch.hub.load_state_dict_from_url(remote.source_url(), model_dir=str(folder), map_location="cpu",
                                           progress=True, check_hash=True, file_name=remote.filename,
                                           weights_only=True)
    return folder / remote.filename


def _fetch_hf(remote: Remote) -> Path:
    from huggingface_hub import hf_hub_download

    from livercad.runtime.weights import sha256_file

    path = Path(hf_hub_download(str(remote.repo_id), remote.filename, revision=remote.revision,
                                cache_dir=str(hf_cache_dir()), endpoint=hf_endpoint(), etag_timeout=10))
    blob = path.resolve()
    if _SHA256.fullmatch(blob.name) and sha256_file(blob) != blob.name:
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise RuntimeError(f"sha256 of the downloaded {remote.filename} does not match its ETag {blob.name[:12]}…")
    return path


def fetch(remote: Remote, name: str) -> Path:
    """Download ``remote`` into its library's cache and return the local file.

    Raises:
        WeightsUnavailableError: offline by environment, no route within :data:`PROBE_TIMEOUT_S`, or a failed or
            corrupt download (nothing corrupt is left in the cache).
    """
    url = remote.source_url()
    reason = offline_reason() or unreachable(url)
    if reason is None:
        try:
            return _fetch_hf(remote) if remote.route == "hf" else _fetch_torch(remote)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the library's download is reported the same way
            reason = f"download from {url} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    raise WeightsUnavailableError(unavailable_message(remote, name, reason))
