"""Precision and backend of inference, shared by both stages (``inference.precision`` / ``inference.backend``).

:func:`resolve_precision` turns ``auto | fp32 | bf16`` into ``fp32`` or ``bf16`` (auto: bf16 only where the
device runs it natively). :func:`select_backend` picks how the network runs:

``torch`` runs the network eagerly (channels-last, optional bf16 autocast). ``onnx`` exports the loaded
network once (``torch.onnx.export``, dynamic batch axis) and runs it with ONNX Runtime's
``CPUExecutionProvider`` (intra-op threads = torch's threads, all graph optimisations): on AVX2 CPUs its
convolution kernels get much closer to the fp32 GEMM peak than eager PyTorch. ``auto`` picks ``onnx`` when
the model runs fp32 on the CPU, onnxruntime imports and the export works, ``torch`` otherwise.

Exported graphs of checkpoints are cached by the checkpoint's sha256 in ``$XDG_CACHE_HOME/livercad/onnx``
(``~/.cache`` by default; written atomically, never next to the user's bundle or outputs; the
``CACHE_ENTRIES`` most recently used are kept) and, within a process, the ONNX Runtime sessions are shared.

Memory: :func:`make_session` hands the ~150 MB ONNX Runtime frees while building a session back to the OS
(:func:`release_free_memory`); :func:`release_torch_weights` frees the torch copy of a stage's weights once it
runs on ONNX Runtime (the prediction path does, see :class:`livercad.pipeline.predict.predictor.Predictor`).

Example:
    >>> check_backend("torch")
    'torch'
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from livercad.errors import ConfigError
from livercad.io.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16")
OPSET = 17
CACHE_ENTRIES = 6  # exported graphs kept on disk (least recently used ones are removed)
_SESSIONS: dict[str, Any] = {}


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA bf16, or a CPU with AVX-512-BF16 / AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        checks = [getattr(torch.cpu, n, None) for n in names]
        return any(bool(f()) for f in checks if f is not None)
    return False


def resolve_precision(precision: str = "auto", device: torch.device | str | None = None) -> str:
    """Resolve ``auto | fp32 | bf16`` to ``fp32`` or ``bf16`` for ``device`` (auto: bf16 where native).

    Example:
        >>> resolve_precision("fp32")
        'fp32'
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"inference.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if precision == "auto":
        return "bf16" if bf16_supported(dev) else "fp32"
    return precision


def onnx_available() -> bool:
    """Whether ``onnx`` and ``onnxruntime`` (the ``livercad[onnx]`` extra) are importable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_backend(backend: str) -> str:
    """Return ``backend`` if known and usable here, else raise :class:`ConfigError`.

    Example:
        >>> check_backend("tensorflow")
        Traceback (most recent call last):
        livercad.errors.ConfigError: inference.backend: expected one of auto, torch, onnx, got 'tensorflow'
    """
    if backend not in BACKENDS:
        raise ConfigError(f"inference.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx" and not onnx_available():
        raise ConfigError("inference.backend: 'onnx' needs onnx and onnxruntime, which are not importable; "
                          "install the extra (pip install 'livercad[onnx]') or set inference.backend=torch")
    return backend


def cache_dir() -> Path:
    """Where exported graphs of checkpoints are kept: ``$XDG_CACHE_HOME/livercad/onnx`` (``~/.cache``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "livercad" / "onnx"


class OnnxModel:
    """An ONNX Runtime session called like the torch module it was exported from (fp32 CPU tensors).

    Attributes:
        session: the ``onnxruntime.InferenceSession``; input_name: its single input.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_name: str = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run a batch ``(N, C, H, W)``; returns the first output as a float32 CPU tensor."""
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """Serialise ``model`` (eval mode, CPU) to ONNX with a dynamic batch axis (TorchScript exporter)."""
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=OPSET, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    except (OSError, TypeError):  # pragma: no cover - no dlopen(NULL) on this platform
        return None


def release_free_memory() -> bool:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim(0)``, as Dask's workers do); ``False`` without glibc.

    glibc keeps freed small and medium blocks mapped, so after a burst of temporary buffers they would stay in
    the resident set and add to the next stage's peak. Costs milliseconds.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def make_session(graph: bytes | str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session: ``threads`` intra-op threads (torch's count by default), all optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    src = graph if isinstance(graph, bytes) else str(graph)
    session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    release_free_memory()
    return session


def _refuse_released(module: nn.Module, args: Any) -> None:
    raise RuntimeError(f"the torch weights of this {type(module).__name__} were released because it runs on "
                       "ONNX Runtime; load the checkpoint again (Segmenter.load / Classifier.load) to use it in torch")


def release_torch_weights(*stages: Any) -> int:
    """Free the torch weights of stages on ONNX Runtime (whose session holds its own copy); returns how many.

    A stage (``Segmenter``, ``Classifier``) with ``backend == "onnx"`` gets its ``model`` moved to the ``meta``
    device (~100 MB each freed); calling that module then raises a ``RuntimeError`` saying so.
    """
    done = 0
    for stage in stages:
        model = getattr(stage, "model", None)
        if getattr(stage, "backend", None) != "onnx" or getattr(stage, "runner", None) is None or model is None:
            continue
        if not getattr(model, "_livercad_released", False):
            model.to("meta").register_forward_pre_hook(_refuse_released)
            model._livercad_released = True
            done += 1
    if done:
        release_free_memory()
    return done


def _cache_key(sha256: str | None, shape: tuple[int, ...]) -> str | None:
    if not sha256:
        return None
    text = f"{sha256}|{tuple(shape[1:])}|torch {torch.__version__}|opset {OPSET}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _prune(folder: Path, keep: int = CACHE_ENTRIES) -> None:
    """Remove all but the ``keep`` most recently used graphs of the cache."""
    graphs = [p for p in folder.glob("*.onnx") if not p.name.startswith(".")]  # not a writer's temporary file
    entries = sorted(graphs, key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def _session_from_disk(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        session = make_session(path)
        os.utime(path)  # mark as recently used
        return session
    except Exception as exc:  # noqa: BLE001 - a corrupt cache entry is rebuilt, never fatal
        logger.info("ignoring unreadable ONNX cache entry %s (%s)", path, exc)
        return None


def onnx_session(model: nn.Module, shape: tuple[int, ...], sha256: str | None = None) -> Any:
    """An ONNX Runtime session for ``model`` at inputs ``(batch, *shape[1:])``, exported once per checkpoint.

    Args:
        model: the network (CPU, eval mode).
        shape: an example input shape ``(N, C, H, W)``; only the batch axis stays dynamic.
        sha256: the checkpoint's hash; when given, the graph is cached on disk and the session in-process.
    """
    key = _cache_key(sha256, shape)
    threads = torch.get_num_threads()
    if key is not None and f"{key}/{threads}" in _SESSIONS:
        return _SESSIONS[f"{key}/{threads}"]
    path = cache_dir() / f"{key}.onnx" if key is not None else None
    session = _session_from_disk(path) if path is not None else None
    if session is None:
        graph = export_onnx(model.eval(), torch.zeros(shape))
        if path is not None:
            try:
                atomic_write_bytes(path, graph)
                _prune(path.parent)
            except OSError as exc:
                logger.info("ONNX cache %s not writable (%s); exported in memory only", path.parent, exc)
        session = make_session(graph, threads)
    if key is not None:
        _SESSIONS[f"{key}/{threads}"] = session
    return session


def select_backend(backend: str, model: nn.Module, shape: tuple[int, ...], *, device: torch.device,
                   precision: str, sha256: str | None = None, what: str = "model",
                   ) -> tuple[str, Callable[[torch.Tensor], torch.Tensor] | None]:
    """Resolve ``auto | torch | onnx`` for one network; returns ``(backend_used, onnx_runner_or_None)``.

    Args:
        backend: the requested backend.
        model: the loaded network; shape: an example input shape (batch axis dynamic).
        device: where the torch model lives; precision: the resolved precision (``fp32`` | ``bf16``).
        sha256: checkpoint hash (disk cache key); what: name used in log and error messages.

    Raises:
        ConfigError: unknown backend, or ``onnx`` asked where it cannot run (missing onnxruntime, a non-CPU
        device, bf16 precision, a failed export).
    """
    check_backend(backend)
    if backend == "torch":
        return "torch", None
    unfit = (f"device {device.type}" if device.type != "cpu" else
             f"precision {precision}" if precision != "fp32" else
             "onnxruntime not importable" if not onnx_available() else None)
    if unfit is not None:
        if backend == "onnx":
            raise ConfigError(f"inference.backend: 'onnx' runs fp32 on the CPU only; the {what} has {unfit}; "
                              "set inference.backend=torch (or auto)")
        logger.info("%s backend: torch (auto; onnx not used: %s)", what, unfit)
        return "torch", None
    try:
        runner = OnnxModel(onnx_session(model, shape, sha256))
    except Exception as exc:  # noqa: BLE001 - exporter/runtime failures are many and version-specific
        reason = " ".join(str(exc).split())[:300]
        if backend == "onnx":
            raise ConfigError(f"inference.backend: the {what} could not be exported to ONNX ({type(exc).__name__}: "
                              f"{reason}); set inference.backend=torch") from None
        logger.warning("%s backend: torch (auto; ONNX export failed: %s)", what, reason)
        return "torch", None
    logger.info("%s backend: onnx (ONNX Runtime %s threads, requested %s)", what, torch.get_num_threads(), backend)
    return "onnx", runner


__all__ = ["BACKENDS", "OPSET", "PRECISIONS", "OnnxModel", "bf16_supported", "cache_dir", "check_backend",
           "export_onnx", "make_session", "onnx_available", "onnx_session", "release_free_memory",
           "release_torch_weights", "resolve_precision", "select_backend"]
