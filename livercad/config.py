"""Validated configuration: one pydantic model per section, YAML load/save, dotted overrides.

Every section forbids unknown keys, so a typo (``segment.model.encodr``) is a :class:`ConfigError`
naming the key instead of a silently ignored setting.

Example:
    >>> cfg = load_config(None, overrides=["segment.train.max_minutes=1.5"])
    >>> cfg.segment.train.max_minutes
    1.5
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from livercad.config_keys import drop_retired, format_validation, set_dotted
from livercad.errors import ConfigError

log = logging.getLogger(__name__)

#: The abdominal CT window in HU (liver level): CT preprocessing maps it to [-1, 1]; overlays show it.
CT_WINDOW: tuple[float, float] = (-160.0, 240.0)
#: Clip percentiles of MR/US intensity normalisation.
PERCENTILES: tuple[float, float] = (0.5, 99.5)

#: A manifest column holding one of a case's co-registered images: ``image`` or ``image_<phase>``.
IMAGE_COLUMN = re.compile(r"image(_[A-Za-z0-9][A-Za-z0-9_-]*)?")

Modality = Literal["ct", "mr", "mr-t2", "us"]
Precision = Literal["auto", "fp32", "bf16"]
Strategy = str  # scratch | frozen | finetune | partial:N  (validated in classify.model)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PhantomConfig(_Section):
    """Synthetic cohort used when no manifest is given (the embedded default data)."""

    n: int = Field(60, ge=3)
    modality: Modality = "ct"
    seed: int = 0
    shape: tuple[int, int, int] = (128, 128, 48)
    classes: list[str] = ["normal", "steatosis", "cirrhosis"]
    orientations: Literal["mixed", "canonical"] = "mixed"
    sites: int = Field(1, ge=1)
    shortcut: bool = False
    ct_phase: Literal["portal-venous", "non-contrast"] = "portal-venous"
    # domain randomisation (livercad.phantom.synth): random contrast, geometry and imaging per case,
    # modalities in turn; labels, sites, shortcut, shape and orientations do not apply then
    randomise: bool = False
    modalities: list[Literal["ct", "mr"]] = ["ct", "mr"]
    # randomised generator version (livercad.phantom.synth.GENERATOR_VERSIONS): 1 = the shipped model's data;
    # 2 adds collapsed and pelvic bowel loops, random bowel content and fully random soft-tissue CT contrast;
    # 3 is version 1 with a left lobe and segment IV that reach caudally and cross the midline
    version: Literal[1, 2, 3] = 1
    # with randomise: this many cases of the classic phantom (`modality`, `shape`, `seed`, `orientations`,
    # `ct_phase`; its own patients) join the randomised cohort, as an anchor of one fixed rendering beside
    # the randomised ones (livercad.pipeline.training.orchestrate.cohort_rows; refused without randomise);
    # 0: the randomised cohort alone
    anchor: int = Field(0, ge=0)
    # further CT phases rendered from each case's label map, written as image_<phase> manifest columns
    # (livercad.phantom.phases); the `image` column keeps ct_phase. Empty: one image per case
    phases: list[Literal["non-contrast", "arterial", "portal-venous", "delayed"]] = []


class DataConfig(_Section):
    """Where cases come from and how they are split by patient.

    ``external_masks``: another tool's masks (:mod:`livercad.io.external_masks`): a folder
    (``<case_id>/liver.nii.gz`` or ``<case_id>.nii.gz`` read with the ``external_labels`` map), or
    ``degraded:<dice>`` (each case's ground truth eroded in model space to that Dice: the phantom's stand-in
    for another tool's masks, for the ablation's ``external-mask`` arm).
    """

    manifest: Path | None = None
    phantom: PhantomConfig = PhantomConfig()
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 0
    liver_labels: list[int] | None = None
    external_masks: str | None = None
    external_labels: str | None = None
    # the 4th axis of a 4-D NIfTI `image` holds the co-registered input images (segment.model.images, in
    # that order) instead of time points; without it a true 4-D file is refused (livercad.io.channels)
    channels_axis: bool = False


class PreprocessConfig(_Section):
    """Per-modality intensity normalisation and the in-plane model size."""

    modality: Modality = "ct"
    ct_window: tuple[float, float] = CT_WINDOW
    percentiles: tuple[float, float] = PERCENTILES
    image_size: int = Field(256, ge=32)


class SegmentModelConfig(_Section):
    """smp U-Net: encoder by name, weights ``none | imagenet | <path>``, 2.5-D context."""

    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_weights: str = "imagenet"  # downloaded on first use (livercad.runtime.weights); `none`: random init
    context: int = Field(1, ge=0, le=4)  # neighbours each side: 1 -> 3 input channels (2.5-D)
    decoder_channels: list[int] | None = None  # U-Net decoder widths, deepest first; None = smp's (256..16)
    # the co-registered images of a case, in channel order, by manifest column: `image` first, then
    # `image_<phase>` columns (livercad.io.channels); input channels = (2*context + 1) * len(images)
    images: list[str] = ["image"]

    @field_validator("images")
    @classmethod
    def _image_columns(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not IMAGE_COLUMN.fullmatch(n)]
        if not v or v[0] != "image" or bad or len(set(v)) != len(v):
            raise ValueError(f"images must be distinct manifest columns, 'image' first, then image_<phase> "
                             f"(letters, digits, '-', '_'), got {v}")
        return v

    @field_validator("decoder_channels")
    @classmethod
    def _positive_widths(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(int(c) < 1 for c in v)):
            raise ValueError(f"decoder_channels must be positive integers, got {v}")
        return v


class TrainConfig(_Section):
    """Training loop budget and optimisation (shared by both stages)."""

    max_epochs: int = Field(30, ge=1)
    max_minutes: float = Field(4.0, gt=0)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    patience: int = Field(5, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    num_workers: int = Field(0, ge=0)


class PostprocessConfig(_Section):
    """Turning a probability map into the final mask (MONAI transforms)."""

    threshold: float = Field(0.5, gt=0, lt=1)
    largest_component: bool = True
    # with largest_component: cut the component where its axial area narrows to a waist and grows again
    # (a leak through the liver's inferior tip into bowel; livercad.segment.waist)
    waist_cut: bool = True
    fill_holes: bool = True


class SegmentConfig(_Section):
    """Stage 1."""

    model: SegmentModelConfig = SegmentModelConfig()
    train: TrainConfig = TrainConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    liver_slice_fraction: float = Field(0.5, ge=0, le=1)  # share of liver-bearing slices per batch
    crop_size: int | None = Field(None, ge=16)  # train on random square crops of this size (None = whole slice)
    # random gamma, histogram remapping and blur of the normalised slices (segment.data.intensity_augment)
    intensity_augment: bool = False
    # decay of an exponential moving average of the weights (e.g. 0.999): validation and the exported
    # segmenter use the averaged weights, which swing less from one checkpoint to the next; None = off
    ema: float | None = Field(None, gt=0, lt=1)
    # validation volumes used while training (evenly spaced over the val split; None = all): the wall-clock
    # budget reserves the closing validation, which grows with the number of volumes
    max_val_cases: int | None = Field(24, ge=1)
    # start from a trained segmenter: "default" (the model shipped in the package), a bundle folder or a
    # segmenter.pt; finetune false uses it as it is (no stage-1 training), true trains on from its weights
    init: str | None = None
    finetune: bool = True


class ClassifyConfig(_Section):
    """Stage 2."""

    backbone: str = "resnet50"
    weights: str = "imagenet"  # downloaded on first use (livercad.runtime.weights); `none`: random init
    strategy: Strategy = "finetune"
    region: str = "mask"
    mask_source: Literal["segmenter", "external"] = "segmenter"  # external: trains on data.external_masks
    classes: list[str] = ["normal", "cirrhosis"]
    image_size: int = Field(224, ge=32)
    crop_margin: float = Field(0.1, ge=0)
    aggregation: str = "area-weighted"
    top_k: int = Field(3, ge=1)
    decision: Literal["youden", "argmax"] = "youden"  # binary: threshold of max Youden's J on validation
    min_liver_fraction: float = Field(0.01, ge=0, le=1)
    backbone_lr_factor: float = Field(0.1, gt=0)
    class_weighting: bool = True
    augment: Literal["affine", "none"] = "affine"  # none: pixel-exact inputs (fine texture cues, short budgets)
    train: TrainConfig = TrainConfig(lr=3e-4, batch_size=16)

    @field_validator("classes")
    @classmethod
    def _two_or_more(cls, v: list[str]) -> list[str]:
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError(f"need at least two distinct classes, got {v}")
        return v


class InferenceConfig(_Section):
    """How a trained bundle is run on new volumes."""

    precision: Precision = "auto"
    backend: Literal["auto", "torch", "onnx"] = "auto"  # auto: ONNX Runtime for fp32 on CPU when it imports
    batch_size: int = Field(4, ge=1)
    channels_last: bool = True
    coarse_to_fine: bool = True  # stage 1: every ~15 mm slice, then only the slices around the liver
    engine: Literal["local", "ray"] = "local"
    qc_images: bool = True
    report: bool = True
    # the local engine reads the next case on a worker thread while the current one is post-processed and
    # written (livercad.pipeline.predict.predictor.Predictor.run); off: strictly one case after the other
    read_ahead: bool = True
    # metrics.json's attenuation rule also scores contrast-enhanced CT (livercad.classify.attenuation.check_phase;
    # `livercad evaluate --attenuation-force`); off: those cases are left out and counted
    attenuation_force: bool = False


class AblationConfig(_Section):
    """Segmentation-impact ablation grid.

    ``train`` and ``image_size`` override ``classify.train`` / ``classify.image_size`` for every arm
    (None: use the classify values). ``train`` is a whole training section: keys it leaves out take the
    :class:`TrainConfig` defaults, not the values of ``classify.train``. The ``external-mask`` region uses
    ``data.external_masks``. ``attenuation``: add the CT attenuation-rule arms (binary normal vs steatosis;
    refused on contrast-enhanced CT unless ``attenuation_force``).
    """

    regions: list[str] = ["full", "mask", "crop", "oracle-mask"]
    strategies: list[str] = ["frozen", "finetune"]
    backbones: list[str] = ["resnet50"]
    seeds: int = Field(3, ge=1)
    reference: str = "full"
    mask_quality_targets: list[float] = [1.0, 0.95, 0.9, 0.8, 0.7]
    saliency: bool = True
    saliency_cases: int = Field(8, ge=0)
    saliency_method: Literal["gradient-input", "gradcam"] = "gradient-input"
    n_boot: int = Field(1000, ge=100)
    train: TrainConfig | None = None
    image_size: int | None = Field(None, ge=32)
    attenuation: bool = False
    attenuation_force: bool = False


class Config(_Section):
    """The whole configuration of a livercad run."""

    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    segment: SegmentConfig = SegmentConfig()
    classify: ClassifyConfig = ClassifyConfig()
    inference: InferenceConfig = InferenceConfig()
    ablation: AblationConfig = AblationConfig()
    seed: int = 0


def config_from_dict(tree: dict[str, Any], *, source: str = "<config>", drop_retired_keys: bool = False) -> Config:
    """Validate a plain dict into a :class:`Config`, raising a one-line ConfigError.

    ``drop_retired_keys``: accept (and drop) the :data:`livercad.config_keys.RETIRED_KEYS` an older
    version wrote.
    """
    if drop_retired_keys:
        tree, dropped = drop_retired(tree)
        if dropped:
            log.debug("%s: dropped retired keys %s", source, ", ".join(dropped))
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_validation(err, source)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None, *,
                drop_retired_keys: bool = False) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides.

    Args:
        path: YAML file; a bare name like ``demo`` is looked up among the packaged presets.
        overrides: ``["classify.region=crop", "segment.train.max_minutes=2"]``.
        drop_retired_keys: accept and drop the :data:`livercad.config_keys.RETIRED_KEYS` (the config of a
            bundle written by an older version).

    Returns:
        The validated config.

    Raises:
        ConfigError: missing file, bad YAML, unknown or retired key, wrong type (one line, naming the key).
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = resolve_preset(path)
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: cannot read config: {' '.join(str(exc).split())}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections, got {type(loaded).__name__}")
        tree = loaded or {}
    for item in overrides or []:
        set_dotted(tree, item)
    return config_from_dict(tree, source=source, drop_retired_keys=drop_retired_keys)


def resolve_preset(path: str | Path) -> Path:
    """Return ``path`` if it exists, else the packaged preset ``livercad/configs/<name>.yaml``."""
    p = Path(path)
    if p.is_file():
        return p
    packaged = Path(__file__).parent / "configs" / f"{p.stem}.yaml"
    if packaged.is_file():
        return packaged
    raise ConfigError(f"{p}: config file not found (and no packaged preset named '{p.stem}')")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """JSON/YAML-safe dict of a config (paths as strings)."""
    return cfg.model_dump(mode="json")


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write a config as YAML (atomically)."""
    from livercad.io.atomic import atomic_write_text

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    return atomic_write_text(Path(path), text)
