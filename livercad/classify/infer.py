"""Slice -> case classification with a trained stage-2 model.

A case is classified from its liver-bearing slices (:func:`livercad.classify.data.select_slices`: by
predicted-mask area, falling back to the largest-area slice, or to unmasked middle slices when the
mask is empty). The slice logits are aggregated into one case verdict, then soft-maxed:

* ``area-weighted`` (default): mean of the slice logits weighted by liver area;
* ``mean``: plain mean of the slice logits;
* ``max``: per-class maximum of the slice logits ("any slice says so");
* ``top-k``: mean of the logits of the ``top_k`` largest-area slices;
* ``single-slice``: the logits of the slice with the largest liver area (the seed paper's slice at
  the caudate level). ``top-k`` and ``single-slice`` only run the network on the slices they use.

2-D inputs (ultrasound frames, Z = 1) are one-slice cases. Inference runs under ``torch.inference_mode``
in channels-last layout, with bf16 autocast when the precision resolves to bf16 (``auto``: bf16 on a
CUDA device that supports it, fp32 otherwise). ``backend="onnx"`` (or ``auto``) runs the network with ONNX
Runtime instead (:mod:`livercad.runtime.backend`).

Example:
    >>> import torch
    >>> aggregate_logits(torch.tensor([[0., 1.], [2., 0.]]), torch.tensor([1., 3.]), "area-weighted").tolist()
    [1.5, 0.25]
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, log_loss

from livercad.classify.data import CONTEXT, case_inputs
from livercad.classify.model import ClassifierNet, build_classifier
from livercad.classify.regions import region_channels
from livercad.errors import CheckpointError, ConfigError, InputError, did_you_mean
from livercad.metrics.classification import auc_with_ci
from livercad.runtime.backend import resolve_precision, select_backend
from livercad.runtime.checkpoint_meta import ClassifierMeta, load_stage, read_meta
from livercad.types import CaseSlices

logger = logging.getLogger(__name__)

AGGREGATIONS = ("area-weighted", "mean", "max", "top-k", "single-slice")


def check_aggregation(mode: str) -> str:
    """Return ``mode`` if it is a known aggregation, else raise ConfigError with a suggestion."""
    if mode not in AGGREGATIONS:
        hint = did_you_mean(mode, list(AGGREGATIONS))
        raise ConfigError(f"classify.aggregation: unknown aggregation '{mode}'; {hint}"
                          f"available: {', '.join(AGGREGATIONS)}")
    return mode


def slices_used(areas: torch.Tensor, mode: str, top_k: int = 3) -> torch.Tensor:
    """Indices (into ``areas``) of the slices an aggregation needs.

    Example:
        >>> slices_used(torch.tensor([5., 9., 1., 7.]), "top-k", 2).tolist()
        [1, 3]
    """
    check_aggregation(mode)
    if mode == "single-slice":
        return torch.argmax(areas).view(1)
    if mode == "top-k":
        return torch.topk(areas, min(top_k, areas.numel())).indices
    return torch.arange(areas.numel())


def aggregate_logits(logits: torch.Tensor, areas: torch.Tensor, mode: str = "area-weighted",
                     top_k: int = 3) -> torch.Tensor:
    """Combine slice logits ``(N, K)`` with liver areas ``(N,)`` into case logits ``(K,)``.

    Example:
        >>> lg = torch.tensor([[0., 4.], [2., 0.], [1., 1.]]); a = torch.tensor([1., 5., 2.])
        >>> aggregate_logits(lg, a, "max").tolist(), aggregate_logits(lg, a, "single-slice").tolist()
        ([2.0, 4.0], [2.0, 0.0])
    """
    idx = slices_used(areas, mode, top_k)
    lg, ar = logits[idx].float(), areas[idx].float()
    if mode == "area-weighted":
        w = ar / ar.sum() if float(ar.sum()) > 0 else torch.full_like(ar, 1.0 / ar.numel())
        return (lg * w[:, None]).sum(0)
    if mode == "max":
        return lg.max(0).values
    return lg.mean(0)


class Classifier:
    """A trained stage-2 model with the settings it was trained with (region, size, classes, ...).

    Attributes:
        model: the network (eval mode, channels-last); meta: the checkpoint metadata (read by
        :func:`livercad.runtime.checkpoint_meta.read_meta`, defaults filled);
        classes, region, image_size, aggregation, top_k, min_liver_fraction, crop_margin, images: from meta;
        precision: ``fp32`` | ``bf16`` (resolved); device: where it runs;
        backend: ``torch`` | ``onnx`` (resolved, see :func:`livercad.runtime.backend.select_backend`).
    """

    def __init__(self, model: ClassifierNet, meta: Mapping[str, Any] | ClassifierMeta, *, precision: str = "auto",
                 device: str | torch.device | None = None, backend: str = "torch", channels_last: bool = True,
                 ) -> None:
        info = meta if isinstance(meta, ClassifierMeta) else _read(model, meta)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = resolve_precision("fp32" if backend == "onnx" and precision == "auto" else precision,
                                           self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device).eval().to(memory_format=self.memory_format)
        self.meta = info.to_dict()
        self.classes: list[str] = list(info.classes)
        self.region, self.image_size, self.top_k = info.region, info.image_size, info.top_k
        self.aggregation: str = check_aggregation(info.aggregation)
        self.min_liver_fraction, self.crop_margin = info.min_liver_fraction, info.crop_margin
        self.images: tuple[str, ...] = tuple(info.images)
        shape = (1, info.in_channels, self.image_size, self.image_size)
        self.backend, self.runner = select_backend(backend, self.model, shape, device=self.device,
                                                   precision=self.precision, what="classifier",
                                                   sha256=(info.checkpoint or {}).get("sha256"))

    @classmethod
    def load(cls, path: str | Path, precision: str = "auto", device: str | torch.device | None = None,
             backend: str = "torch", channels_last: bool = True) -> Classifier:
        """Load a ``classifier.pt`` written by :func:`livercad.classify.fit.train_classifier`.

        Raises:
            CheckpointError: missing/unsafe file, not a classifier checkpoint, or weights not fitting.
        """
        state, info = load_stage(path, ClassifierMeta)
        model = build_classifier(info.backbone, weights="none", num_classes=len(info.classes),
                                 in_channels=info.in_channels, strategy="scratch")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit {info.backbone}: "
                                  f"{' '.join(str(exc).split())[:300]}") from None
        model.weights = info.weights or model.weights
        return cls(model, info, precision=precision, device=device, backend=backend, channels_last=channels_last)

    def logits(self, x: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Slice logits ``(N, K)`` (float32, CPU) for inputs ``(N, C, H, W)``."""
        outs = []
        use_bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for i in range(0, x.shape[0], batch_size):
                if self.runner is not None:
                    outs.append(self.runner(x[i:i + batch_size]))
                    continue
                xb = x[i:i + batch_size].to(self.device, torch.float32).contiguous(memory_format=self.memory_format)
                outs.append(self.model(xb).float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, len(self.classes))


def _read(model: ClassifierNet, meta: Mapping[str, Any]) -> ClassifierMeta:
    """Typed metadata of a network built here; what ``meta`` leaves out is taken from the network."""
    own = {"kind": ClassifierMeta.KIND, "backbone": model.name, "family": model.family, "weights": model.weights,
           "in_channels": region_channels(str(meta.get("region")), 2 * CONTEXT + 1) if "region" in meta else 3}
    return read_meta(ClassifierMeta, {**own, **meta}, "classifier metadata")


def net_fingerprint(net: ClassifierNet) -> str:
    """sha1 of a network's backbone name and weights (keys cached features to the exact backbone)."""
    h = hashlib.sha1(net.name.encode())
    for k, v in net.backbone.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def backbone_features(net: ClassifierNet, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Pooled backbone features ``(N, F)`` of inputs ``(N, C, H, W)`` in eval mode (no autograd)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = [net.backbone(x[i:i + batch_size].float()) for i in range(0, x.shape[0], batch_size)]
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, net.num_features)


def case_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Case-level ``auc``, ``accuracy``, ``nll`` and ``score`` (stage-2 model selection).

    ``score`` = ROC AUC (binary; macro one-vs-rest for K > 2; balanced accuracy when a class is missing so
    AUC is undefined) - 0.001 x log loss (a tie-breaker once AUC saturates).
    """
    k = proba.shape[1]
    pred = proba.argmax(1)
    p = np.clip(proba, 1e-7, 1)
    nll = float(log_loss(y, p / p.sum(1, keepdims=True), labels=list(range(k))))
    auc = auc_with_ci(y, proba, ci=False).auc  # nan when a class is missing from the validation cases
    primary = auc if not math.isnan(auc) else float(balanced_accuracy_score(y, pred))
    return {"auc": auc, "accuracy": float((pred == y).mean()), "nll": nll, "score": primary - 1e-3 * nll}


def _unwrap(clf: Any) -> Classifier:
    return clf.classifier if hasattr(clf, "classifier") and isinstance(clf.classifier, Classifier) else clf


def case_logits(clf: Classifier, case: CaseSlices, *, aggregation: str | None = None,
                batch_size: int = 16) -> torch.Tensor:
    """Aggregated case logits ``(K,)`` (before the softmax)."""
    clf = _unwrap(clf)
    mode = check_aggregation(aggregation or clf.aggregation)
    want = tuple(getattr(clf, "images", ("image",)))
    if tuple(case.images) != want:
        raise InputError(None, f"case '{case.case_id}': images {', '.join(case.images)} differ from the "
                               f"classifier's {', '.join(want)}")
    x, areas = case_inputs(case, region=clf.region, size=clf.image_size, margin=clf.crop_margin,
                           min_fraction=clf.min_liver_fraction)
    idx = slices_used(areas, mode, clf.top_k)
    return aggregate_logits(clf.logits(x[idx], batch_size), areas[idx], mode, clf.top_k)


def predict_case(clf: Classifier, case: CaseSlices, *, aggregation: str | None = None,
                 batch_size: int = 16) -> np.ndarray:
    """Class probabilities ``(K,)`` of one case (softmax of the aggregated slice logits).

    Args:
        clf: a :class:`Classifier` (or a ``TrainedClassifier``).
        case: the case's stage-2 cache.
        aggregation: override the trained aggregation (``area-weighted``, ``mean``, ``max``, ``top-k``,
            ``single-slice``).
        batch_size: slices per forward pass.
    """
    return torch.softmax(case_logits(clf, case, aggregation=aggregation, batch_size=batch_size), 0).numpy()


def predict_cases(clf: Classifier, cases: list[CaseSlices], *, aggregation: str | None = None,
                  batch_size: int = 16) -> np.ndarray:
    """Class probabilities ``(n, K)`` of several cases (rows in the order given)."""
    clf = _unwrap(clf)
    rows = [predict_case(clf, c, aggregation=aggregation, batch_size=batch_size) for c in cases]
    return np.stack(rows) if rows else np.zeros((0, len(clf.classes)), np.float32)


__all__ = ["AGGREGATIONS", "Classifier", "aggregate_logits", "backbone_features", "case_logits", "case_scores",
           "check_aggregation", "net_fingerprint", "predict_case", "predict_cases", "slices_used"]
