"""Decision threshold of a binary classifier chosen on validation (Youden's J), folded into its head.

A classifier trained briefly from random init often ranks cases well (high AUC) while its probabilities
sit on one side of 0.5 (BatchNorm statistics, class balance), so ``argmax`` calls every case the same
class. With ``classify.decision: youden`` (default) the threshold ``t`` on the positive-class probability
that maximises Youden's J = sensitivity + specificity - 1 on the *validation* cases (Chen et al. 2020) is
chosen at the best epoch, and ``logit(t)`` is subtracted from the positive class's bias of the linear
head. Every case logit moves by the same constant (all aggregations are shift-equivariant), so ``argmax``
of the new probabilities is exactly ``p >= t`` on the old ones: predicted labels, accuracy, McNemar and
the pipeline follow without a separate threshold anywhere; ranking metrics (ROC AUC) are unchanged.

Example:
    >>> youden_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.35, 0.4]))
    0.325
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

DECISIONS: tuple[str, ...] = ("youden", "argmax")


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold on ``p`` maximising Youden's J for labels ``y`` (0/1): midway between the cut's two scores."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y), np.asarray(p, dtype=float), drop_intermediate=False)
    i = int(np.argmax(tpr - fpr))
    upper = float(min(thr[i], 1.0))
    lower = float(thr[i + 1]) if i + 1 < len(thr) else 0.0
    return (upper + lower) / 2.0


def fold_threshold(head: nn.Linear, threshold: float) -> float:
    """Shift the positive class's bias of a 2-output ``head`` so that ``argmax`` means ``p1 >= threshold``.

    Returns the logit shift applied (``logit(threshold)``, ``threshold`` clipped to [1e-6, 1 - 1e-6]).
    """
    t = min(max(float(threshold), 1e-6), 1.0 - 1e-6)
    shift = math.log(t / (1.0 - t))
    with torch.no_grad():
        head.bias[1] -= shift
    return shift


def choose_decision(method: str, y_val: np.ndarray, proba_val: np.ndarray | None,
                    n_classes: int) -> dict[str, Any]:
    """The decision rule to record: Youden's threshold where it applies, else ``argmax`` with the reason."""
    if method == "argmax":
        return {"method": "argmax"}
    reason = ("not a binary task" if n_classes != 2 else
              "no validation probabilities" if proba_val is None or len(proba_val) != len(y_val) else
              "validation cases of one class only" if np.unique(y_val).size < 2 else None)
    if reason is not None:
        logger.info("decision: argmax (%s)", reason)
        return {"method": "argmax", "reason": reason}
    p = np.asarray(proba_val, dtype=float)[:, 1]
    t = youden_threshold(y_val, p)
    pred = p >= t
    y = np.asarray(y_val) == 1
    j = float(pred[y].mean() + (~pred[~y]).mean() - 1.0)
    return {"method": "youden", "threshold": t, "val_youden_j": j, "n_val": int(len(y))}


__all__ = ["DECISIONS", "choose_decision", "fold_threshold", "youden_threshold"]
