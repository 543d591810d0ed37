"""``livercad export``: each stage of a bundle as ONNX or TorchScript, checked against torch on a phantom case.

Each exported network is run on the same input as the torch network it came from: the 2.5-D slice stacks
of a phantom CT prepared the way prediction prepares it (stage 1), and liver slices of that case at the
classifier's size (stage 2). The largest absolute difference of the outputs (probabilities) and the
agreement of the decisions (mask voxels, slice classes) are written to ``export.json`` beside the files;
an export whose probabilities differ by more than :data:`TOLERANCE` is reported as failed (and the
command exits 1), never silently shipped. Files are written atomically.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from livercad.errors import ConfigError
from livercad.io.atomic import atomic_write_bytes, atomic_write_text

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
#: Largest absolute probability difference an export may show against torch (fp32 on both sides).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class StageExport:
    """One exported network and its check against torch.

    Attributes:
        stage: ``segmenter`` or ``classifier``; format: ``onnx`` | ``torchscript``; file: the written file.
        input_shape: the check's input ``(N, C, H, W)``; max_abs_diff: largest probability difference.
        agreement: fraction of equal decisions (mask voxels at the threshold; slice argmax).
        ok: ``max_abs_diff <= tolerance``; seconds: export and check time.
    """

    stage: str
    format: str
    file: str
    sha256: str
    input_shape: list[int]
    max_abs_diff: float
    agreement: float
    tolerance: float
    ok: bool
    seconds: float


def _serialise(model: nn.Module, example: torch.Tensor, fmt: str) -> bytes:
    from livercad.runtime.backend import export_onnx

    if fmt == "onnx":
        return export_onnx(model, example)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, (example,), check_trace=False), buf)
    return buf.getvalue()


def _run_exported(data: bytes, example: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == "onnx":
        from livercad.runtime.backend import OnnxModel, make_session

        return OnnxModel(make_session(data))(example)
    module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        return module(example).float()


def export_stage(model: nn.Module, example: torch.Tensor, *, stage: str, fmt: str, out: Path,
                 activation: str, threshold: float = 0.5) -> StageExport:
    """Export ``model`` (fp32, CPU, eval) to ``out`` and compare it with torch on ``example``.

    Args:
        activation: ``sigmoid`` (stage 1: a liver probability per pixel) or ``softmax`` (stage 2: classes).
        threshold: the mask threshold for the stage-1 agreement.
    """
    import hashlib

    t0 = time.perf_counter()
    model = model.float().eval().to("cpu")
    data = _serialise(model, example, fmt)
    with torch.no_grad():
        ref = model(example).float()
    got = _run_exported(data, example, fmt)
    act = torch.sigmoid if activation == "sigmoid" else (lambda t: torch.softmax(t, dim=1))
    p_ref, p_got = act(ref), act(got)
    diff = float((p_ref - p_got).abs().max())
    if activation == "sigmoid":
        agree = float(((p_ref >= threshold) == (p_got >= threshold)).float().mean())
    else:
        agree = float((p_ref.argmax(1) == p_got.argmax(1)).float().mean())
    atomic_write_bytes(out, data)
    return StageExport(stage, fmt, out.name, hashlib.sha256(data).hexdigest(), list(example.shape), diff, agree,
                       TOLERANCE, diff <= TOLERANCE, time.perf_counter() - t0)


def _phantom_inputs(seg: Any, n_slices: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-1 slice stacks of a phantom CT around its liver, and the model-space images of those slices."""
    from livercad.phantom import make_case
    from livercad.preprocess.prepare import context_stack
    from livercad.types import Volume

    case = make_case("export-check", shape=(96, 96, 24), seed=7)
    spacing = np.sqrt((np.asarray(case.affine)[:3, :3] ** 2).sum(axis=0))
    data = case.image.astype(np.float32)
    extra = (data,) * (len(seg.images) - 1)  # a multi-phase segmenter: the same image stands for every phase
    volume = Volume(data, case.affine, None, tuple(float(s) for s in spacing), channels=extra)
    prepared = seg.prepare(volume, "ct")
    image = torch.as_tensor(np.asarray(prepared.image), dtype=torch.float32)
    centre = image.shape[0] // 2
    idx = torch.arange(max(centre - n_slices // 2, 0), min(centre + n_slices // 2, image.shape[0]))
    first = image[idx, 0] if image.ndim == 4 else image[idx]
    return context_stack(image, idx, int(seg.meta["context"])), first


def _classifier_input(slices: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    x = torch.nn.functional.interpolate(slices[:, None], size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, channels, 1, 1)


def export_bundle(bundle_path: str | Path, out_dir: str | Path, fmt: str = "onnx") -> list[StageExport]:
    """Export every stage of a bundle to ``out_dir`` and write ``export.json``; returns the checks.

    Raises:
        ConfigError: an unknown format, or ``onnx`` without ``onnxruntime`` installed.
        CheckpointError: the bundle cannot be opened.
    """
    from livercad.pipeline.bundle import load_bundle
    from livercad.runtime.backend import onnx_available
    from livercad.segment.infer import Segmenter

    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "onnx" and not onnx_available():
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'livercad[onnx]'")
    bundle, out = load_bundle(bundle_path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seg = Segmenter.load(bundle.segmenter_path, precision="fp32", device="cpu")
    x1, slices = _phantom_inputs(seg)
    results = [export_stage(seg.model, x1, stage="segmenter", fmt=fmt, out=out / f"segmenter{SUFFIX[fmt]}",
                            activation="sigmoid", threshold=float(seg.postprocess.threshold))]
    if bundle.classifier_path is not None:
        from livercad.classify.infer import Classifier

        clf = Classifier.load(bundle.classifier_path, precision="fp32", device="cpu")
        x2 = _classifier_input(slices, int(clf.meta["image_size"]), int(clf.meta["in_channels"]))
        results.append(export_stage(clf.model, x2, stage="classifier", fmt=fmt,
                                    out=out / f"classifier{SUFFIX[fmt]}", activation="softmax"))
    record = {"bundle": str(Path(bundle_path).resolve()), "format": fmt, "torch": torch.__version__,
              "check": "a phantom CT (seed 7), fp32 CPU, probabilities compared",
              "stages": [asdict(r) for r in results]}
    atomic_write_text(out / "export.json", json.dumps(record, indent=2) + "\n")
    return results


__all__ = ["FORMATS", "TOLERANCE", "StageExport", "export_bundle", "export_stage"]
