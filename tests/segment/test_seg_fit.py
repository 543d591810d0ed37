"""Stage-1 training: slice data, balanced sampling, anatomy-safe augmentation, Lightning loop, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livercad.config import Config, PreprocessConfig, SegmentConfig, SegmentModelConfig, TrainConfig
from livercad.errors import InputError
from livercad.io.manifest import ManifestRow
from livercad.io.nifti import load_mask, load_volume, save_mask, save_volume
from livercad.preprocess.prepare import context_stack
from livercad.runtime.checkpoint import load_checkpoint
from livercad.segment.data import (
    SliceDataset,
    TrainingSlices,
    anatomy_augment,
    balanced_sampler,
    load_cases,
    model_space_mask,
)
from livercad.segment.fit import _split, train_segmenter
from livercad.segment.infer import Segmenter, segment_prepared


def _cfg(**train) -> Config:
    # a generous time budget keeps the LR schedule step-driven (reproducible) even on a loaded machine
    t = TrainConfig(batch_size=4, steps_per_epoch=3, max_epochs=1, max_minutes=30.0, seed=5, **train)
    return Config(preprocess=PreprocessConfig(modality="ct", image_size=32),
                  segment=SegmentConfig(model=SegmentModelConfig(encoder="resnet18", encoder_weights="none"),
                                        train=t))


@pytest.fixture(scope="module")
def tiny_rows(tmp_path_factory) -> list[ManifestRow]:
    """Four small CT cases (40x40x6, an ellipsoid 'liver' at 120 HU in slices 1-4) on varied grids."""
    folder = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(np.arange(40), np.arange(40), np.arange(6), indexing="ij")
    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        liver = ((x - 14 - i) / 9.0) ** 2 + ((y - 20) / 11.0) ** 2 + ((z - 2.5) / 2.2) ** 2 <= 1.0
        image = np.where(liver, 120.0, -20.0) + rng.normal(0, 10, liver.shape)
        affine = np.diag([-1.0 if i % 2 else 1.0, 1.0, 4.0, 1.0])
        vol = load_volume(save_volume(image, affine, folder / f"c{i}.nii.gz"))
        save_mask(liver.astype(np.uint8), vol, folder / f"c{i}_mask.nii.gz")
        rows.append(ManifestRow(f"c{i}", f"p{i}", folder / f"c{i}.nii.gz", folder / f"c{i}_mask.nii.gz", split=split))
    return rows


def test_slice_dataset_serves_context_stacks_and_masks(tiny_rows):
    cases = load_cases(tiny_rows[:2], _cfg())
    ds = SliceDataset(cases, context=1)
    assert len(ds) == 12 and ds.liver_flags().tolist() == [False, True, True, True, True, False] * 2
    x, y, c = ds[6 + 4]
    assert c == 1 and tuple(x.shape) == (3, 32, 32) and tuple(y.shape) == (1, 32, 32)
    assert torch.equal(x, context_stack(cases[1].image, [4], 1)[0].float())
    assert torch.equal(y[0], cases[1].mask[4].float()) and cases[1].image.dtype == torch.float16


def test_balanced_sampler_hits_the_requested_share():
    flags = torch.tensor([True] * 5 + [False] * 95)
    drawn = torch.tensor(list(balanced_sampler(flags, 0.3, 4000, torch.Generator().manual_seed(1))))
    assert abs(float(flags[drawn].float().mean()) - 0.3) < 0.03
    only_liver = list(balanced_sampler(torch.tensor([True, True]), 0.3, 50))
    assert set(only_liver) <= {0, 1}


def test_augmentation_is_joint_and_never_flips():
    mask = torch.zeros(1, 64, 64)
    mask[0, 10:30, 20:44] = 1.0  # liver on the low-x side of the image
    aug = anatomy_augment(seed=3, prob=1.0)
    for _ in range(20):
        out = aug({"image": mask.repeat(3, 1, 1).clone(), "mask": mask.clone()})
        img, m = torch.as_tensor(out["image"])[1] > 0.5, torch.as_tensor(out["mask"])[0] > 0.5
        inter = (img & m).sum().item()
        assert 2 * inter / (img.sum().item() + m.sum().item()) > 0.85  # same geometric transform
        rows = torch.nonzero(m)[:, 0].float()
        assert rows.mean() < 32  # still on the same side: no flip


def test_crop_size_crops_image_and_mask_alike():
    index = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 64, 64)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    aug = anatomy_augment(seed=5, prob=0.0, crop_size=40)  # no affine: geometry is the crop alone
    seen = set()
    for _ in range(10):
        out = aug({"image": image.clone(), "mask": index.clone()})  # the mask only gets geometric transforms
        img, m = torch.as_tensor(out["image"]), torch.as_tensor(out["mask"])
        assert tuple(img.shape) == (3, 40, 40) and tuple(m.shape) == (1, 40, 40)
        top, left = divmod(int(m[0, 0, 0]), 64)
        assert torch.equal(m, index[:, top:top + 40, left:left + 40])
        expected = image[0, top:top + 40, left:left + 40].flatten()
        assert torch.corrcoef(torch.stack([img[0].flatten(), expected]))[0, 1] > 0.9  # same window (another: ~0)
        seen.add((top, left))
    assert len(seen) > 1  # a random position, not a fixed one
    small = anatomy_augment(seed=5, prob=0.0, crop_size=96)({"image": image.clone(), "mask": index.clone()})
    assert tuple(torch.as_tensor(small["image"]).shape) == (3, 64, 64)  # slices smaller than the crop stay whole


def test_intensity_augmentation_changes_contrast_not_the_mask():
    ramp = torch.linspace(0, 1, 64).repeat(64, 1)[None].repeat(3, 1, 1)
    mask = (ramp[:1] > 0.5).float()
    aug = anatomy_augment(seed=2, prob=0.0, intensity=True)  # no affine: only intensity transforms move pixels
    changed = 0
    for _ in range(20):
        out = aug({"image": ramp.clone(), "mask": mask.clone()})
        img, m = torch.as_tensor(out["image"]), torch.as_tensor(out["mask"])
        assert torch.equal(m, mask)
        ranks = torch.corrcoef(torch.stack([img[1].flatten().argsort().argsort().float(),
                                            ramp[1].flatten().argsort().argsort().float()]))[0, 1]
        assert ranks > 0.95  # the same anatomy, brighter or darker
        profile = img[1, 32]
        changed += int(not torch.allclose(profile - profile.mean(), ramp[1, 32] - ramp[1, 32].mean(), atol=0.02))
    assert changed >= 5  # the contrast itself changes, not only its scale and offset


def test_ema_validates_and_exports_the_averaged_weights():
    from livercad.runtime.budget import TimeBudget
    from livercad.segment.fit import run_fingerprint
    from livercad.segment.module import SegmentationModule

    cfg = _cfg()
    cfg.segment.ema = 0.5
    module = SegmentationModule(cfg, n_val_cases=1, budget=TimeBudget(60.0, 1, 10))
    assert module.ema is not None and any(k.startswith("ema.") for k in module.state_dict())  # checkpointed
    assert not any(p.requires_grad for p in module.ema.parameters())  # DDP waits for no gradient of it
    first = next(module.model.parameters())
    module.on_train_batch_end(None, None, 0)  # the first update copies the weights
    p0 = first.detach().clone()
    with torch.no_grad():
        first.add_(1.0)
    module.on_train_batch_end(None, None, 1)
    averaged = next(module.evaluated.parameters())
    assert module.evaluated is module.ema.module and torch.allclose(averaged, p0 + 0.5)
    plain = _cfg()
    assert "ema" in run_fingerprint(cfg, []) and "ema" not in run_fingerprint(plain, [])
    without = SegmentationModule(plain, n_val_cases=1, budget=TimeBudget(60.0, 1, 10))
    assert without.ema is None and without.evaluated is without.model


@pytest.fixture(scope="module")
def trained(tiny_rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train_segmenter(tiny_rows, _cfg(), out, progress=False, max_steps=3)


def test_training_exports_a_loadable_checkpoint_with_provenance(tiny_rows, trained):
    out, path = trained
    _, meta = load_checkpoint(path)
    assert path == out / "segmenter.pt" and list((out / "lightning" / "checkpoints").glob("*.ckpt"))
    assert meta["config"]["segment"]["model"]["encoder"] == "resnet18"
    assert meta["preprocessing"]["modality"] == "ct" and meta["preprocessing"]["image_size"] == 32
    assert meta["in_channels"] == 3 and meta["weights"]["source"] == "random"
    assert meta["history"]["steps"] == 3 and meta["history"]["n_train_cases"] == 2
    assert meta["history"]["lr_schedule"] == "steps" and meta["seed"] == 5
    assert set(meta["versions"]) >= {"torch", "smp", "monai", "livercad"}
    # the recorded best validation Dice is the 3-D Dice of the exported weights on the val volume
    seg = Segmenter.load(path, precision="fp32", device="cpu")
    row = tiny_rows[2]
    vol = load_volume(row.image)
    prepared = seg.prepare(vol)
    ref = model_space_mask(prepared, load_mask(row.mask, vol)).bool()
    pred = segment_prepared(seg, prepared) > 0.5
    dice = 2 * (pred & ref).sum().item() / (pred.sum().item() + ref.sum().item())
    assert meta["history"]["best_val_dice"] == pytest.approx(dice, abs=2e-3)


def test_same_seed_gives_the_same_weights(tiny_rows, trained, tmp_path):
    a = load_checkpoint(trained[1])[0]
    b = load_checkpoint(train_segmenter(tiny_rows, _cfg(), tmp_path, progress=False, max_steps=3))[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_split_or_mask_is_an_input_error(tiny_rows, tmp_path):
    with pytest.raises(InputError, match="no 'val' cases"):
        train_segmenter([r for r in tiny_rows if r.split != "val"], _cfg(), tmp_path, progress=False)
    no_mask = ManifestRow("nm", "pnm", tiny_rows[0].image, None, split="train")
    with pytest.raises(InputError, match="no ground-truth mask"):
        train_segmenter([no_mask, tiny_rows[2]], _cfg(), tmp_path, progress=False)


def test_validation_volumes_are_capped_evenly_and_deterministically():
    rows = [ManifestRow(f"v{i}", f"p{i}", f"v{i}.nii.gz", None, split="val") for i in range(10)]
    rows += [ManifestRow("t0", "pt", "t0.nii.gz", None, split="train")]
    assert [r.case_id for r in _split(rows, "val", 4)] == ["v0", "v3", "v6", "v9"]
    assert len(_split(rows, "val", None)) == 10 and len(_split(rows, "val", 20)) == 10
    assert [r.case_id for r in _split(rows, "train", 1)] == ["t0"]


def test_training_validates_on_at_most_max_val_cases(tiny_rows, tmp_path):
    rows = [r if r.split != "test" else ManifestRow(r.case_id, r.patient_id, r.image, r.mask, split="val")
            for r in tiny_rows]  # two validation volumes
    cfg = _cfg()
    cfg.segment.max_val_cases = 1
    _, meta = load_checkpoint(train_segmenter(rows, cfg, tmp_path, progress=False, max_steps=1))
    assert meta["history"]["n_val_cases"] == 1 and meta["history"]["n_train_cases"] == 2


def test_case_slices_liver_flags():
    mask = torch.zeros(3, 4, 4, dtype=torch.uint8)
    mask[1, 2, 2] = 1
    case = TrainingSlices("c", torch.zeros(3, 4, 4, dtype=torch.float16), mask)
    assert case.liver_slices.tolist() == [False, True, False]
