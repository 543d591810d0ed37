"""Youden's-J decision threshold chosen on validation and folded into the classifier head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve
from torch import nn

from livercad.classify.fit import train_classifier
from livercad.classify.infer import predict_cases
from livercad.classify.threshold import choose_decision, fold_threshold, youden_threshold
from livercad.config import ClassifyConfig, TrainConfig


def test_youden_threshold_by_hand_and_against_the_roc_curve() -> None:
    # J per cut: >=0.4 -> 0.5, >=0.35 -> 1.0 (both positives, no negative), >=0.3 -> 0.5
    assert youden_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.35, 0.4])) == pytest.approx(0.325)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 + 0.15 * y + rng.normal(0, 0.1, 200), 0, 1)  # all scores < 0.5 for most positives
    t = youden_threshold(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    pred = p >= t
    assert pred[y == 1].mean() - pred[y == 0].mean() == pytest.approx(float(np.max(tpr - fpr)))


def test_folding_makes_argmax_equal_to_the_threshold_rule() -> None:
    torch.manual_seed(0)
    head = nn.Linear(5, 2)
    x = torch.randn(300, 5)
    p_before = torch.softmax(head(x), 1)[:, 1].detach().numpy()
    t = float(np.quantile(p_before, 0.7))
    fold_threshold(head, t)
    after = torch.softmax(head(x), 1).detach().numpy()
    np.testing.assert_array_equal(after.argmax(1) == 1, p_before >= t)
    assert np.argsort(after[:, 1]).tolist() == np.argsort(p_before).tolist()  # ranking (AUC) unchanged


def test_choose_decision_falls_back_to_argmax_with_a_reason() -> None:
    y, p = np.array([0, 1, 0, 1]), np.array([[0.9, 0.1], [0.7, 0.3], [0.8, 0.2], [0.6, 0.4]])
    assert choose_decision("argmax", y, p, 2) == {"method": "argmax"}
    assert choose_decision("youden", y, p, 3)["reason"] == "not a binary task"
    assert choose_decision("youden", np.zeros(4, int), p, 2)["reason"] == "validation cases of one class only"
    d = choose_decision("youden", y, p, 2)
    assert d["method"] == "youden" and d["val_youden_j"] == 1.0 and 0.2 < d["threshold"] < 0.3


def _cases(n: int, start: int) -> list:
    from livercad.types import CaseSlices

    out = []
    for i in range(start, start + n):
        rng, label = np.random.default_rng(i), i % 2
        img = rng.normal(0, 0.05, (3, 32, 32)).astype(np.float32)
        img[:, 8:20, 8:20] += 0.3 + 0.3 * label
        m = torch.zeros(3, 32, 32, dtype=torch.uint8)
        m[:, 8:20, 8:20] = 1
        out.append(CaseSlices(f"c{i}", f"p{i}", label, torch.from_numpy(img).half(), m.half(), m, m.clone()))
    return out


def test_trained_classifier_decides_at_the_validation_threshold() -> None:
    train, val = _cases(8, 0), _cases(6, 100)
    cfg = ClassifyConfig(backbone="test_resnet", weights="none", strategy="frozen", region="mask", image_size=32,
                         train=TrainConfig(max_epochs=2, steps_per_epoch=2, batch_size=4, max_minutes=2))
    trained = train_classifier(train, val, cfg, None, progress=False)
    d = trained.meta["decision"]
    assert d["method"] == "youden" and 0.0 < d["threshold"] < 1.0
    proba = predict_cases(trained.classifier, val)
    y = np.array([c.label for c in val])
    pred = proba.argmax(1) == 1
    assert pred[y == 1].mean() - pred[y == 0].mean() == pytest.approx(d["val_youden_j"], abs=1e-6)
    plain = train_classifier(train, val, cfg.model_copy(update={"decision": "argmax"}), None, progress=False)
    assert plain.meta["decision"] == {"method": "argmax"}
