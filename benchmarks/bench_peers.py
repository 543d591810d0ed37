"""livercad against its peers, timed in the same run on the same phantom CT volumes (speed only).

Each contender runs in its own process, one after the other, on the same ``.nii.gz`` volumes, so that its
peak RSS (``getrusage`` in that process) is its own; the processes are forked from one server that has
imported torch, MONAI and livercad once (``multiprocessing`` ``forkserver`` on the CPU, ``spawn`` on CUDA),
so imports are neither timed nor paid per contender. Model building / loading is timed apart (``setup_s``)
and is not part of the seconds per volume. Random weights where the real ones are not at hand: only speed
is compared.

Contenders (``--quick`` shrinks the peers: 12 mm grid, a quarter of the features, 32-voxel windows):

* ``livercad``: the prediction pipeline as ``bench_pipeline.run_pipeline`` runs it (both stages, read to
  write), with the stage-1 model the run times (the shipped ``livercad/models/liver`` by default) and a
  random-weight ResNet50 stage 2;
* ``monai_segresnet_3mm``: MONAI model-zoo bundle ``wholeBody_ct_segmentation``, low-resolution (3 mm)
  variant, as its ``inference.json`` runs it: SegResNet(3-D, 1 -> 105, init_filters 32, blocks_down
  1-2-2-4, blocks_up 1-1-1, dropout 0.2); LoadImaged, EnsureTyped, EnsureChannelFirstd, Orientationd RAS,
  Spacingd 3 mm bilinear, NormalizeIntensityd(nonzero), ScaleIntensityd(-1, 1); SlidingWindowInferer roi
  96³, sw_batch_size 1, overlap 0.25, gaussian, replicate padding; softmax, argmax, Invertd (nearest),
  SaveImaged;
* ``nnunet_fast_3mm``: a 3-D nnU-Net ``PlainConvUNet`` (``dynamic_network_architectures``; MONAI
  ``DynUNet`` when that package is missing) at TotalSegmentator ``--fast``'s plan: 3 mm, 6 stages,
  features 32-64-128-256-320-320, 3³ kernels, 2 convs per stage, instance norm, leaky ReLU, 118 outputs,
  patch 128x112x112 (x, y, z), strides from nnU-Net's rule; TotalSegmentator's chain around it (closest
  canonical, order-3 resampling to 3 mm, CT clip + z-score, nnU-Net sliding window with step 0.5 and its
  gaussian, no mirroring, softmax + argmax, order-0 resampling back, undo canonical, uint8 NIfTI);
* ``naive_monai_2d``: the textbook 2-D MONAI recipe of ``bench_pipeline.run_naive`` with livercad's
  stage-1 network and weights (batch-1 eager per-slice loop).

``livercad_ratio`` = peer seconds / livercad seconds per volume (whole livercad pipeline, both stages);
``livercad_ratio_stage1`` the same against livercad's stage 1 alone (read to mask write), which is what
the peers do. Target: livercad faster per volume than the fastest peer of the same run.

Usage::

    python benchmarks/bench_peers.py                       # 3 volumes of 512x512x100, shipped model
    python benchmarks/bench_peers.py --quick --random-weights --backend torch   # smoke run (tiny volume)
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import multiprocessing as mp
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import RESULTS, rss_mb, write_result

from livercad.errors import CheckpointError
from livercad.models import default_bundle_path, segmenter_checkpoint

PEERS = ("monai_segresnet_3mm", "nnunet_fast_3mm", "naive_monai_2d")
STAGE1 = ("read", "preprocess", "segment", "postprocess", "write")
#: Heavy modules imported once by the fork server (a name that does not import is skipped).
PRELOAD = ["bench_pipeline", "scipy.ndimage", "monai.networks.nets", "monai.inferers", "monai.transforms",
           "dynamic_network_architectures.architectures.unet"]


# --------------------------------------------------------------------------------------------- model choice
def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--segmenter`` / ``--random-weights`` (exclusive) and ``--device``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--segmenter", default=None,
                   help="a segmenter.pt or bundle folder to time (default: the shipped livercad/models/liver)")
    g.add_argument("--random-weights", action="store_true",
                   help="time an untrained U-Net/ResNet34 at --image-size instead of the shipped model")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where every contender runs (auto: CUDA when available)")


def add_peer_args(p: argparse.ArgumentParser) -> None:
    """``--peers`` and ``--peer-spacing``."""
    p.add_argument("--peers", default="all",
                   help=f"comma-separated subset of {','.join(PEERS)}, 'all' or 'none'")
    p.add_argument("--peer-spacing", type=float, default=None,
                   help="isotropic grid (mm) of the 3-D peers (3; --quick: 12)")


def model_source(args: argparse.Namespace) -> dict[str, Any]:
    """The stage-1 model the run times: ``{"source": shipped | segmenter | random, "path": ...}``.

    Raises:
        SystemExit: one line, when the shipped model (the default) or ``--segmenter`` is not there.
    """
    if args.random_weights:
        return {"source": "random", "path": None}
    if args.segmenter:
        try:
            return {"source": "segmenter", "path": str(segmenter_checkpoint(args.segmenter))}
        except CheckpointError as exc:
            raise SystemExit(f"bench: {exc}") from None
    path = default_bundle_path() / "segmenter.pt"
    if not path.is_file():
        raise SystemExit(f"bench: the shipped stage-1 model {path} is not there; build it with 'make model', "
                         "or pass --random-weights (untrained, --image-size px) or --segmenter PATH")
    return {"source": "shipped", "path": str(path)}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda but torch sees no CUDA device")
    return torch.device(name)


def selected(spec: str) -> list[str]:
    """The peers named by ``--peers``."""
    if spec in ("all", ""):
        return list(PEERS)
    if spec == "none":
        return []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        raise SystemExit(f"bench: unknown peer(s) {unknown}; choose from {list(PEERS)}")
    return names


# ----------------------------------------------------------------------------------------- peer settings
def nnunet_strides(patch: list[int], n_stages: int, min_size: int = 4) -> list[list[int]]:
    """nnU-Net's pooling rule: halve an axis at each stage while its feature map stays >= ``min_size``.

    Example:
        >>> nnunet_strides([128, 112, 112], 6)[-1]
        [2, 1, 1]
    """
    size, out = list(patch), [[1] * len(patch)]
    for _ in range(n_stages - 1):
        s = [2 if v // 2 >= min_size and v % 2 == 0 else 1 for v in size]
        size = [v // k for v, k in zip(size, s, strict=True)]
        out.append(s)
    return out


def peer_configs(quick: bool, spacing: float) -> dict[str, dict[str, Any]]:
    """What each 3-D peer runs, recorded in the JSON as run (``quick``: reduced features and windows)."""
    div = 4 if quick else 1
    roi = 32 if quick else 96
    seg = {"architecture": "monai.networks.nets.SegResNet", "spatial_dims": 3, "in_channels": 1,
           "out_channels": 105, "init_filters": 32 // div, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1],
           "dropout_prob": 0.2, "spacing_mm": spacing, "roi_size": [roi] * 3, "sw_batch_size": 1,
           "overlap": 0.25, "blend": "gaussian (sigma 0.125 x roi)", "padding_mode": "replicate",
           "intensity": "NormalizeIntensityd(nonzero=True) -> ScaleIntensityd(-1, 1)",
           "precision": "fp32 on CPU; fp16 autocast on CUDA (the bundle's evaluator amp=true)",
           "source": "Project-MONAI/model-zoo models/wholeBody_ct_segmentation configs/inference.json "
                     "(highres=false -> pixdim 3.0) and configs_3mm/inference.json"}
    patch = [32, 32, 32] if quick else [128, 112, 112]
    feats = [min(32 * 2**i, 320) // div for i in range(6)]
    dna = importlib.util.find_spec("dynamic_network_architectures") is not None
    nn_cfg = {"architecture": "dynamic_network_architectures PlainConvUNet" if dna else
              "monai.networks.nets.DynUNet (dynamic_network_architectures not installed)",
              "n_stages": 6, "features_per_stage": feats, "kernel_size": 3,
              "strides": nnunet_strides(patch, 6), "n_conv_per_stage": 2, "n_conv_per_stage_decoder": 2,
              "num_classes": 118, "norm": "InstanceNorm3d(eps=1e-5, affine=True)",
              "nonlin": "LeakyReLU(0.01)", "conv_bias": True, "deep_supervision": False,
              "spacing_mm": spacing, "patch_size_xyz": patch, "tile_step_size": 0.5,
              "blend": "nnU-Net gaussian (sigma 1/8 of the patch, scaled to 10, zeros replaced by the minimum)",
              "mirroring": False, "intensity": "clip [-1004, 1588], z-score (mean -50.38, std 503.39)",
              "resampling": "scipy.ndimage.zoom order 3 to the grid, order 0 back (TotalSegmentator change_spacing)",
              "precision": "fp32 on CPU; fp16 autocast on CUDA (nnU-Net's predictor)",
              "source": "TotalSegmentator v2 --fast = Dataset297_TotalSegmentator_total_3mm_1559subj, "
                        "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres; step_size 0.5"}
    return {"monai_segresnet_3mm": seg, "nnunet_fast_3mm": nn_cfg}


NOTES = [
    "Speed only: the 3-D peers have random weights (their real ones are not shipped here); livercad runs the "
    "stage-1 model named in 'model' and a random-weight stage 2.",
    "SegResNet: the bundle's own intensity chain is NormalizeIntensityd(nonzero) + ScaleIntensityd(-1, 1), "
    "not ScaleIntensityRange(-1024, 1024); sw_batch_size 1 as in its inference.json (the evaluator's "
    "amp=true is a no-op on the CPU). Mask written as uint8 (the bundle writes float32), so the peer's write "
    "is if anything faster than the bundle's.",
    "nnU-Net: TotalSegmentator's plans.json for Dataset297 was not at hand; patch 112x112x128 in nnU-Net's "
    "(z, y, x) array order, i.e. 128 on x here (read the other way round, a 512x512x100 phantom would take 4 "
    "windows instead of 2), and strides follow nnU-Net's planning rule (an axis is halved "
    "while its feature map stays >= 4 voxels), which gives [1,1,1], 4 x [2,2,2], [2,1,1]. The intensity "
    "constants are approximate (speed-neutral). Logits accumulate in fp16 as in nnU-Net v2. In-memory chain: "
    "TotalSegmentator's temporary NIfTI round trips and nnU-Net's worker processes are not counted, so this "
    "peer's figure is if anything lower than the real tool's.",
    "livercad_ratio = peer seconds per volume / livercad seconds per volume (both livercad stages, read to "
    "write); livercad_ratio_stage1 uses livercad's stage 1 alone (read to mask write), what the peers do.",
    "Each contender in its own process, forked from a server that imported the libraries once: peak_rss_mb is "
    "that process's getrusage maximum (rss_mb_at_start: its floor at the fork; library pages count once "
    "touched), not comparable with bench_rss.py's fresh processes; contenders run one after the other, in "
    "the order listed.",
]


# -------------------------------------------------------------------------------------------- peer runners
def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _amp(dev: torch.device) -> Any:
    """fp16 autocast on CUDA (what both 3-D peers' own inference does there), nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else torch.autocast(
        "cpu", enabled=False)


class SegResNetPeer:
    """MONAI ``wholeBody_ct_segmentation`` at 3 mm, transform by transform as its ``inference.json``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from monai.inferers import SlidingWindowInferer
        from monai.networks.nets import SegResNet
        from monai.transforms import (
            Activationsd,
            AsDiscreted,
            Compose,
            EnsureChannelFirstd,
            EnsureTyped,
            Invertd,
            LoadImaged,
            NormalizeIntensityd,
            Orientationd,
            SaveImaged,
            ScaleIntensityd,
            Spacingd,
        )

        cfg, self.dev = spec["config"], torch.device(spec["device"])
        torch.manual_seed(0)
        self.net = SegResNet(spatial_dims=3, in_channels=1, out_channels=cfg["out_channels"],
                             init_filters=cfg["init_filters"], blocks_down=tuple(cfg["blocks_down"]),
                             blocks_up=tuple(cfg["blocks_up"]), dropout_prob=cfg["dropout_prob"]).to(self.dev).eval()
        load = [LoadImaged("image"), EnsureTyped("image"), EnsureChannelFirstd("image")]
        pre = [Orientationd("image", axcodes="RAS"), Spacingd("image", pixdim=[cfg["spacing_mm"]] * 3, mode="bilinear"),
               NormalizeIntensityd("image", nonzero=True), ScaleIntensityd("image", minv=-1.0, maxv=1.0)]
        self.load, self.pre = Compose(load), Compose(pre)
        self.inferer = SlidingWindowInferer(roi_size=cfg["roi_size"], sw_batch_size=cfg["sw_batch_size"],
                                            overlap=cfg["overlap"], padding_mode="replicate", mode="gaussian",
                                            device=self.dev)
        self.post = Compose([Activationsd("pred", softmax=True), AsDiscreted("pred", argmax=True),
                             Invertd("pred", transform=Compose(load + pre), orig_keys="image", nearest_interp=True,
                                     to_tensor=True)])
        self.save = SaveImaged("pred", output_dir=spec["out"], output_postfix="segresnet", output_dtype=np.uint8,
                               separate_folder=False, print_log=False)
        self.info = {"parameters_m": round(sum(p.numel() for p in self.net.parameters()) / 1e6, 2)}

    def __call__(self, path: Path) -> dict[str, float]:
        s: dict[str, float] = {}
        t = time.perf_counter()
        d = self.load({"image": str(path)})
        s["read"] = time.perf_counter() - t
        t = time.perf_counter()
        d = self.pre(d)
        s["preprocess"] = time.perf_counter() - t
        self.info["grid"] = list(d["image"].shape[1:])
        t = time.perf_counter()
        with torch.no_grad(), _amp(self.dev):
            d["pred"] = self.inferer(d["image"][None].to(self.dev), self.net)[0].float()
        _sync(self.dev)
        s["segment"] = time.perf_counter() - t
        t = time.perf_counter()
        d = self.post(d)
        _sync(self.dev)
        s["postprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        self.save(d)
        s["write"] = time.perf_counter() - t
        return s


def nnunet_gaussian(patch: list[int], sigma_scale: float = 1 / 8, value_scaling: float = 10.0) -> np.ndarray:
    """nnU-Net's tile weighting: a centred gaussian (sigma ``sigma_scale`` x patch), peak ``value_scaling``."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(patch, np.float32)
    delta[tuple(p // 2 for p in patch)] = 1.0
    g = gaussian_filter(delta, [p * sigma_scale for p in patch], 0, mode="constant", cval=0.0)
    g = g / g.max() * value_scaling
    g[g == 0] = g[g > 0].min()
    return g.astype(np.float32)


def nnunet_steps(size: int, tile: int, step: float) -> list[int]:
    """nnU-Net's tile starts along one axis (``size`` >= ``tile``): ceil((size - tile) / (tile x step)) + 1, evenly."""
    n = int(np.ceil((size - tile) / (tile * step))) + 1
    if n == 1:
        return [0]
    return [int(round((size - tile) / (n - 1) * i)) for i in range(n)]


def build_nnunet(cfg: dict[str, Any]) -> torch.nn.Module:
    """``PlainConvUNet`` of ``cfg`` (``DynUNet`` as near as it gets when dynamic_network_architectures is missing)."""
    from torch import nn

    strides = [tuple(s) for s in cfg["strides"]]
    if cfg["architecture"].startswith("dynamic_network_architectures"):
        from dynamic_network_architectures.architectures.unet import PlainConvUNet

        return PlainConvUNet(1, cfg["n_stages"], cfg["features_per_stage"], nn.Conv3d, cfg["kernel_size"], strides,
                             cfg["n_conv_per_stage"], cfg["num_classes"], cfg["n_conv_per_stage_decoder"],
                             conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                             nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False)
    from monai.networks.nets import DynUNet

    return DynUNet(3, 1, cfg["num_classes"], kernel_size=[cfg["kernel_size"]] * cfg["n_stages"], strides=strides,
                   upsample_kernel_size=strides[1:], filters=cfg["features_per_stage"],
                   norm_name=("INSTANCE", {"eps": 1e-5, "affine": True}),
                   act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}), deep_supervision=False)


class NnUNetPeer:
    """A TotalSegmentator ``--fast``-style nnU-Net: canonical, order-3 resampling to 3 mm, nnU-Net sliding window."""

    def __init__(self, spec: dict[str, Any]) -> None:
        cfg, self.dev = spec["config"], torch.device(spec["device"])
        self.cfg, self.out = cfg, Path(spec["out"])
        torch.manual_seed(0)
        self.net = build_nnunet(cfg).to(self.dev).eval()
        self.patch = list(cfg["patch_size_xyz"])
        self.gauss = torch.from_numpy(nnunet_gaussian(self.patch)).to(self.dev, torch.half)
        self.info = {"parameters_m": round(sum(p.numel() for p in self.net.parameters()) / 1e6, 2)}

    def sliding_window(self, image: np.ndarray) -> tuple[torch.Tensor, int]:
        """fp16 class logits ``(C, X, Y, Z)`` of ``image``: padded to the patch, tiles at step 0.5, gaussian blend."""
        shape = image.shape
        pad = [max(0, p - s) for p, s in zip(self.patch, shape, strict=True)]
        lo = [p // 2 for p in pad]
        x = torch.from_numpy(np.pad(image, [(a, p - a) for a, p in zip(lo, pad, strict=True)]))[None, None]
        size = x.shape[2:]
        starts = [nnunet_steps(s, p, self.cfg["tile_step_size"]) for s, p in zip(size, self.patch, strict=True)]
        # fp16 accumulation buffers and gaussian, as nnU-Net v2's predictor
        logits = torch.zeros((self.cfg["num_classes"], *size), dtype=torch.half, device=self.dev)
        weight = torch.zeros(size, dtype=torch.half, device=self.dev)
        n = 0
        with torch.no_grad(), _amp(self.dev):
            for a in starts[0]:
                for b in starts[1]:
                    for c in starts[2]:
                        sl = (slice(a, a + self.patch[0]), slice(b, b + self.patch[1]), slice(c, c + self.patch[2]))
                        pred = self.net(x[(..., *sl)].to(self.dev))[0].float()
                        logits[(slice(None), *sl)] += pred * self.gauss
                        weight[sl] += self.gauss
                        n += 1
        logits /= weight
        crop = tuple(slice(a, a + s) for a, s in zip(lo, shape, strict=True))
        return logits[(slice(None), *crop)], n

    def __call__(self, path: Path) -> dict[str, float]:
        import nibabel as nib
        from scipy.ndimage import zoom

        s: dict[str, float] = {}
        t = time.perf_counter()
        img = nib.load(str(path))
        data = img.get_fdata(dtype=np.float32)
        s["read"] = time.perf_counter() - t
        t = time.perf_counter()
        canon = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
        arr = np.asanyarray(canon.dataobj)
        zooms = np.array(canon.header.get_zooms()[:3], float)
        grid = np.maximum(np.round(np.array(arr.shape) * zooms / self.cfg["spacing_mm"]).astype(int), 1)
        arr = zoom(arr, grid / np.array(arr.shape), order=3)
        arr = ((np.clip(arr, -1004.0, 1588.0) + 50.38) / 503.39).astype(np.float32)
        s["preprocess"] = time.perf_counter() - t
        self.info["grid"] = [int(v) for v in arr.shape]
        t = time.perf_counter()
        logits, self.info["windows"] = self.sliding_window(arr)
        _sync(self.dev)
        s["segment"] = time.perf_counter() - t
        t = time.perf_counter()
        labels = torch.softmax(logits.float(), 0).argmax(0).to(torch.uint8).cpu().numpy()  # nnU-Net: float softmax
        del logits
        labels = zoom(labels, np.array(canon.shape[:3]) / np.array(labels.shape), order=0)
        back = nib.orientations.ornt_transform(nib.orientations.io_orientation(canon.affine),
                                               nib.orientations.io_orientation(img.affine))
        labels = np.ascontiguousarray(nib.orientations.apply_orientation(labels, back))
        s["postprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        header = img.header.copy()
        header.set_data_dtype(np.uint8)
        name = f"{path.name.split('.')[0]}_nnunet.nii.gz"
        nib.save(nib.Nifti1Image(labels, img.affine, header), str(self.out / name))
        s["write"] = time.perf_counter() - t
        return s


class NaivePeer:
    """``bench_pipeline.run_naive`` with livercad's stage-1 network (probability map kept for the agreement)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from livercad.segment.infer import Segmenter

        self.dev, self.out, self.keep = torch.device(spec["device"]), Path(spec["out"]), spec.get("keep_prob", False)
        seg = Segmenter.load(spec["segmenter"], device=self.dev, precision="fp32", backend="torch")
        self.model, self.pp, self.context = seg.model, seg.preprocessing, int(seg.meta["context"])
        self.info: dict[str, Any] = {"image_size": int(self.pp["image_size"])}
        if self.keep:
            self.info["probabilities"] = []

    def __call__(self, path: Path) -> dict[str, float]:
        from bench_pipeline import run_naive

        r = run_naive(self.model, path, self.out, int(self.pp["image_size"]), device=self.dev,
                      context=self.context, ct_window=tuple(self.pp["ct_window"]))
        if self.keep:
            prob = self.out / f"{path.name.split('.')[0]}_naive_prob.npy"
            np.save(prob, r["prob"].astype(np.float32))
            self.info["probabilities"].append(str(prob))
        return r["seconds"]


class LivercadPeer:
    """livercad's pipeline (``bench_pipeline.run_pipeline``: both stages, the Predictor's path)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from bench_pipeline import random_classifier

        from livercad.segment.infer import Segmenter

        self.dev, self.out, self.spec = torch.device(spec["device"]), Path(spec["out"]), spec
        self.seg = Segmenter.load(spec["segmenter"], device=self.dev, precision=spec["precision"],
                                  backend=spec["backend"])
        self.clf = random_classifier(spec["classify_size"], self.seg.precision, spec["backend"], device=self.dev)
        self.info = {"image_size": int(self.seg.preprocessing["image_size"]), "precision": self.seg.precision,
                     "backend": {"segmenter": self.seg.backend, "classifier": self.clf.backend},
                     "coarse_to_fine": spec["coarse_to_fine"], "batch": spec["batch"]}

    def __call__(self, path: Path) -> dict[str, float]:
        from bench_pipeline import run_pipeline

        r = run_pipeline(self.seg, self.clf, path, self.out, self.spec["batch"], self.spec["coarse_to_fine"],
                         keep_prob=False)
        _sync(self.dev)
        return r["seconds"]


RUNNERS = {"livercad": LivercadPeer, "monai_segresnet_3mm": SegResNetPeer, "nnunet_fast_3mm": NnUNetPeer,
           "naive_monai_2d": NaivePeer}


def child_main(spec: dict[str, Any], out_json: str) -> None:
    """One contender, in its own process: set up, run every volume, write the figures to ``out_json``."""
    result: dict[str, Any] = {"rss_mb_at_start": round(rss_mb(), 1)}
    try:
        Path(spec["out"]).mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        runner = RUNNERS[spec["peer"]](spec)
        _sync(torch.device(spec["device"]))
        result["setup_s"] = round(time.perf_counter() - t, 3)
        runs = [runner(Path(p)) for p in spec["paths"]]
        for r in runs:
            r["total"] = sum(v for k, v in r.items() if k != "total")
        result["seconds_per_volume"] = round(float(np.mean([r["total"] for r in runs])), 3)
        result["seconds_each"] = [round(r["total"], 3) for r in runs]
        result["stages_s"] = {k: round(float(np.mean([r[k] for r in runs])), 3) for k in runs[0] if k != "total"}
        if spec["peer"] == "livercad":
            result["stage1_seconds_per_volume"] = round(float(np.mean([sum(r[k] for k in STAGE1) for r in runs])), 3)
        result.update(runner.info)
        result["torch_threads"] = torch.get_num_threads()
        if spec["device"].startswith("cuda"):
            result["cuda_peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except Exception as exc:  # reported in the JSON, the other contenders still run
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc().splitlines()[-6:]
    result["peak_rss_mb"] = round(rss_mb(), 1)
    Path(out_json).write_text(json.dumps(result, default=float), encoding="utf-8")


def _context(dev: torch.device) -> Any:
    """``forkserver`` with the heavy modules preloaded on the CPU; ``spawn`` on CUDA (CUDA does not survive fork)."""
    if dev.type == "cuda" or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run_child(ctx: Any, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one contender in its own process and read back its figures (``error`` when it failed)."""
    out = work / f"{spec['peer']}.json"
    out.unlink(missing_ok=True)
    proc = ctx.Process(target=child_main, args=(spec, str(out)), name=f"bench-{spec['peer']}")
    t = time.perf_counter()
    proc.start()
    proc.join()
    wall = round(time.perf_counter() - t, 2)
    if not out.is_file():
        return {"error": f"the process ended with exit code {proc.exitcode} and no result", "process_wall_s": wall}
    result = json.loads(out.read_text(encoding="utf-8"))
    result["process_wall_s"] = wall
    return result


def run_peers(paths: list[Path], checkpoint: str, args: argparse.Namespace, work: Path,
              keep_naive_prob: bool = True) -> dict[str, Any]:
    """livercad and the selected peers, each in its own process, on ``paths``; ratios and the fastest peer.

    ``checkpoint``: the stage-1 ``segmenter.pt`` livercad and the naive recipe load. With ``keep_naive_prob``
    the naive recipe saves its probability maps in ``work`` (paths in ``naive_monai_2d.probabilities``, for
    ``bench_pipeline``'s agreement section), outside its timings.
    """
    dev = resolve_device(args.device)
    names = selected(args.peers)
    spacing = args.peer_spacing or (12.0 if args.quick else 3.0)
    configs = peer_configs(args.quick, spacing)
    ctx = _context(dev)
    common = {"paths": [str(p) for p in paths], "device": str(dev), "segmenter": checkpoint}
    out: dict[str, Any] = {"volumes": len(paths), "device": str(dev), "start_method": ctx.get_start_method(),
                           "order": ["livercad", *names]}
    lc = {"peer": "livercad", "out": str(work / "livercad"), "precision": args.precision, "backend": args.backend,
          "classify_size": args.classify_size, "batch": args.batch, "coarse_to_fine": args.coarse_to_fine}
    out["livercad"] = run_child(ctx, {**common, **lc}, work)
    base, base1 = out["livercad"].get("seconds_per_volume"), out["livercad"].get("stage1_seconds_per_volume")
    for name in names:
        spec = {**common, "peer": name, "out": str(work / name), "config": configs.get(name),
                "keep_prob": keep_naive_prob}
        r = run_child(ctx, spec, work)
        if name in configs:
            r["config"] = configs[name]
        sec = r.get("seconds_per_volume")
        r["livercad_ratio"] = round(sec / base, 3) if sec and base else None
        r["livercad_ratio_stage1"] = round(sec / base1, 3) if sec and base1 else None
        out[name] = r
    timed = {n: out[n]["seconds_per_volume"] for n in names if out[n].get("seconds_per_volume")}
    if timed and base:
        fastest = min(timed, key=timed.get)
        out["fastest_peer"] = fastest
        out["livercad_ratio_vs_fastest"] = out[fastest]["livercad_ratio"]
        out["target"] = "livercad seconds per volume below the fastest peer's in the same run (ratio > 1)"
        out["target_met"] = bool(base < timed[fastest])
    out["notes"] = NOTES
    return out


def summary(peers: dict[str, Any]) -> str:
    """A few human lines of the ``peers`` section: seconds per volume, peak RSS and ratio per contender."""
    lines = [f"peers ({peers.get('volumes')} volume(s), {peers.get('device')}):"]
    for name in peers.get("order", []):
        r = peers[name]
        if "error" in r:
            lines.append(f"  {name:<20} error: {r['error']}")
            continue
        ratio = "" if name == "livercad" else (f"  livercad_ratio {r['livercad_ratio']} "
                                               f"(stage 1 alone {r['livercad_ratio_stage1']})")
        sec, rss = r["seconds_per_volume"], r["peak_rss_mb"]
        lines.append(f"  {name:<20} {sec:9.3f} s/volume  peak RSS {rss:8.1f} MB{ratio}")
    if "fastest_peer" in peers:
        lines.append(f"  fastest peer {peers['fastest_peer']}: livercad_ratio {peers['livercad_ratio_vs_fastest']}, "
                     f"target met: {peers['target_met']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- command line
def checkpoint_for_children(source: dict[str, Any], image_size: int, work: Path) -> str:
    """The ``segmenter.pt`` the contender processes load (random weights: written once to ``work``)."""
    if source["path"]:
        return str(source["path"])
    from livercad.runtime.checkpoint import save_checkpoint
    from livercad.segment.infer import Segmenter

    seg = Segmenter.random(image_size=image_size, encoder="resnet34", device="cpu", backend="torch")
    path = work / "random_segmenter.pt"
    save_checkpoint(path, {k: v.contiguous() for k, v in seg.model.state_dict().items()}, seg.meta)
    return str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    from livercad.config import InferenceConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volumes", type=int, default=3)
    p.add_argument("--shape", default="512x512x100", help="phantom volume shape XxYxZ")
    p.add_argument("--image-size", type=int, default=256, help="segmenter size with --random-weights")
    p.add_argument("--classify-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--backend", default=InferenceConfig().backend, choices=["auto", "torch", "onnx"])
    p.add_argument("--coarse-to-fine", action=argparse.BooleanOptionalAction, default=InferenceConfig().coarse_to_fine)
    add_model_args(p)
    add_peer_args(p)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 volume of 48x48x16, 64 px livercad models, reduced peers on a 12 mm grid")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-save", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.quick:
        args.volumes, args.shape, args.image_size, args.classify_size = 1, "48x48x16", 64, 64
    args.shape = tuple(int(v) for v in str(args.shape).lower().split("x"))
    if len(args.shape) != 3:
        p.error(f"--shape: expected XxYxZ, got {args.shape}")
    selected(args.peers)
    args.model = model_source(args)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run livercad and the peers on fresh phantom volumes, print the JSON, write ``<date>_<host>_peers*.json``."""
    from bench_pipeline import make_volumes

    args = parse_args(argv)
    result: dict[str, Any] = {"benchmark": "peers", "date": dt.datetime.now().isoformat(timespec="seconds"),
                              "host": socket.gethostname(), "torch": torch.__version__,
                              "torch_threads": torch.get_num_threads(), "loadavg": list(os.getloadavg()),
                              "args": {k: v for k, v in vars(args).items() if k not in ("out", "model")},
                              "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_volumes(args.volumes, args.shape, work)
        ckpt = checkpoint_for_children(args.model, args.image_size, work)
        result["peers"] = run_peers(paths, ckpt, args, work, keep_naive_prob=False)
    result["loadavg_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=2, default=float)
    print(text)
    print(summary(result["peers"]))
    if not args.no_save:
        host = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in socket.gethostname())[:40]
        print(f"written {write_result(text, host + '_peers' + ('_quick' if args.quick else ''), args.out)}")
    return result


if __name__ == "__main__":
    main()
