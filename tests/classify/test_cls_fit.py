"""Stage-2 training: every region mode and strategy end to end, frozen vs trained weights, labels, budget."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from livercad.classify.data import augment_batch, sample_weights, stack_inputs
from livercad.classify.fit import train_classifier
from livercad.classify.infer import Classifier, case_scores, predict_cases
from livercad.classify.model import build_classifier
from livercad.classify.regions import REGIONS
from livercad.config import ClassifyConfig, TrainConfig
from livercad.errors import InputError
from livercad.types import CaseSlices


def _case(i: int, label: int, name: str | None = None, z: int = 4, s: int = 32, jitter: bool = True) -> CaseSlices:
    """Body disc at 0, air at -1, a liver square whose brightness is the class (0.1 vs 0.6).

    ``jitter``: random liver position and size (else fixed: only the class and the noise vary).
    """
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[:s, :s]
    img = np.where((yy - s / 2) ** 2 + (xx - s / 2) ** 2 < (0.45 * s) ** 2, 0.0, -1.0)
    img = np.repeat(img[None], z, 0).astype(np.float32)
    r, c, side = (rng.integers(6, 10), rng.integers(6, 10), rng.integers(9, 13)) if jitter else (8, 8, 11)
    mask = np.zeros((z, s, s), np.uint8)
    mask[1:z - 1, r:r + side, c:c + side] = 1
    img[mask.astype(bool)] = 0.6 if label else 0.1
    img += rng.normal(0, 0.05, img.shape).astype(np.float32)
    m = torch.from_numpy(mask)
    return CaseSlices(f"c{i}", f"p{i}", label, torch.from_numpy(img).half(), m.half(), m, m.clone(),
                      (1.0, 1.0, 1.0), name)


def _cohort(n: int, start: int, jitter: bool = True) -> list[CaseSlices]:
    return [_case(start + i, i % 2, jitter=jitter) for i in range(n)]


def _cfg(**kw: object) -> ClassifyConfig:
    train = TrainConfig(max_epochs=int(kw.pop("epochs", 1)), steps_per_epoch=int(kw.pop("steps", 2)),
                        batch_size=4, lr=float(kw.pop("lr", 1e-3)), patience=3, max_minutes=2)
    base = {"backbone": "test_resnet", "weights": "none", "strategy": "frozen", "region": "mask", "image_size": 32}
    return ClassifyConfig(**{**base, **kw}, train=train)


TRAIN, VAL, TEST = _cohort(6, 0), _cohort(4, 100), _cohort(4, 200)


@pytest.mark.parametrize("region", list(REGIONS))
def test_every_region_mode_trains_and_predicts(region: str) -> None:
    trained = train_classifier(TRAIN, VAL, _cfg(region=region), None, progress=False)
    probs = predict_cases(trained, TEST)
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert trained.meta["in_channels"] == (4 if region == "mask-channel" else 3)
    assert trained.meta["region"] == region and len(trained.history) == 1


def _conv_and_bn(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.backbone.state_dict().items() if "num_batches" not in k}


@pytest.mark.parametrize("strategy", ["frozen", "finetune", "partial:1", "scratch"])
def test_strategies_train_exactly_their_parameters(strategy: str) -> None:
    cfg = _cfg(backbone="resnet18", strategy=strategy, steps=2, lr=1e-2)
    pl.seed_everything(7, verbose=False)  # train_classifier seeds the same way before building
    init = build_classifier("resnet18", num_classes=2, strategy=strategy)
    before = _conv_and_bn(init)
    trained = train_classifier(TRAIN, VAL, cfg, None, seed=7, progress=False).model
    after = _conv_and_bn(trained)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not torch.equal(init.head.weight, trained.head.weight)
    if strategy == "frozen":
        assert changed == set()
    elif strategy == "partial:1":
        assert changed and all(k.startswith("layer4.") for k in changed)
    else:
        assert "conv1.weight" in changed and any(k.startswith("layer1.") for k in changed)


def test_learns_easy_task_and_round_trips_checkpoint(tmp_path: Path) -> None:
    cache: dict = {}
    cfg = _cfg(backbone="resnet18", epochs=6, steps=4, lr=3e-2)
    train, val, test = _cohort(12, 300, False), _cohort(4, 350, False), _cohort(10, 400, False)
    trained = train_classifier(train, val, cfg, tmp_path, progress=False, feature_cache=cache)
    probs = predict_cases(trained, test)
    assert roc_auc_score([c.label for c in test], probs[:, 1]) >= 0.9
    loaded = Classifier.load(tmp_path / "classifier.pt")
    assert np.allclose(predict_cases(loaded, test), probs, atol=1e-5)
    meta = loaded.meta
    assert meta["kind"] == "livercad-classifier" and meta["strategy"] == "frozen" and meta["feature_cache"]
    assert meta["weights"]["source"] == "random" and meta["n_train_cases"] == 12 and meta["best_epoch"] >= 0
    assert {"torch", "torchvision", "timm", "lightning"} <= set(meta["versions"])
    n_cached = len(cache)
    again = train_classifier(train, val, cfg, None, progress=False, feature_cache=cache)
    assert len(cache) == n_cached  # same seed -> same backbone -> features reused
    assert np.allclose(predict_cases(again, test), probs, atol=1e-5)


def test_labels_outside_classes_are_skipped_and_counted() -> None:
    named = [_case(i, i % 2, ["normal", "cirrhosis"][i % 2]) for i in range(4)]
    named += [_case(10 + i, 0, "steatosis") for i in range(3)]
    trained = train_classifier(named, [], _cfg(classes=["normal", "cirrhosis"]), None, progress=False)
    assert trained.meta["skipped"] == {"train": {"steatosis": 3}, "val": {}}
    assert trained.meta["n_train_cases"] == 4
    with pytest.raises(InputError, match="at least two"):
        train_classifier([_case(i, 0) for i in range(3)], [], _cfg(), None, progress=False)


def test_sample_weights_balance_cases_and_classes() -> None:
    case = np.array([0, 0, 0, 1, 2])
    label = np.array([0, 0, 0, 0, 1])
    # cases equally likely (1/3 each), then classes: class 0 has 2 cases, class 1 one
    assert np.allclose(sample_weights(case, label, False).numpy(), [1 / 9] * 3 + [1 / 3, 1 / 3])
    assert np.allclose(sample_weights(case, label, True).numpy(), [1 / 12] * 3 + [1 / 4, 1 / 2])


def test_augmentation_keeps_shape_and_mask_channel_values() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.rand(3, 3, 16, 16), torch.ones(3, 1, 16, 16)], 1)
    out = augment_batch(x, 3)
    assert out.shape == x.shape and torch.allclose(out[:, 3], torch.ones(3, 16, 16))
    assert not torch.allclose(out[:, :3], x[:, :3])


@pytest.mark.parametrize("augment", ["affine", "none"])
def test_augment_none_trains_on_the_exact_region_inputs(augment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.classify.module as module

    seen: list[torch.Tensor] = []
    prep = module.ClassifierModule._prep
    monkeypatch.setattr(module.ClassifierModule, "_prep",
                        lambda self, x: (seen.append(x.float()) if self.training else None) or prep(self, x))
    calls: list[int] = []
    monkeypatch.setattr(module, "augment_batch", lambda x, ch: calls.append(ch) or augment_batch(x, ch))
    cfg = _cfg(backbone="resnet18", strategy="scratch", augment=augment, steps=2)
    train_classifier(TRAIN, VAL, cfg, None, progress=False)
    assert len(seen) == 2 and calls == ([3, 3] if augment == "affine" else [])
    exact = torch.cat(stack_inputs(TRAIN, cfg)[0]).float().flatten(1)
    rows = torch.cat(seen).flatten(1)  # every training input is one of the slices' region inputs, unchanged
    assert all(bool((exact == r).all(1).any()) for r in rows)


def test_case_scores() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    s = case_scores(y, p)
    assert s["auc"] == pytest.approx(roc_auc_score(y, p[:, 1])) and s["accuracy"] == 0.5
    one_class = case_scores(np.array([0, 0, 1]), np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.1, 0.9, 0.0]]))
    assert np.isnan(one_class["auc"]) and one_class["score"] < 1  # balanced accuracy fallback


@pytest.mark.parametrize("setting", [{"devices": 2}, {"strategy": "ddp"}, {"num_nodes": 2}])
def test_multi_process_training_is_refused_with_a_clear_error(setting: dict) -> None:
    """Stage 2 is single-process: DDP settings fail before any training instead of misbehaving."""
    from livercad.errors import ConfigError

    cfg = _cfg(strategy="scratch")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=setting)})
    with pytest.raises(ConfigError, match="one process"):
        train_classifier(TRAIN, VAL, cfg, None, seed=0, progress=False)
