"""``livercad train pipeline | segment | classify``, registered on :data:`livercad.cli.app`.

Each command resolves the weights it will load before any data work (a missing file fails in seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from livercad.cli import ConfigOpt, QuietOpt, SetOpt, VerboseOpt, _config, _exits_on_error, app
from livercad.runtime.terminal import command as _terminal

train_app = typer.Typer(no_args_is_help=True, help="Train stage 1, stage 2, or the whole pipeline.")
app.add_typer(train_app, name="train")

ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted training in OUT from its last "
                                         "checkpoint (finished stages are kept; same settings required).")]
DevicesOpt = Annotated[str | None, typer.Option("--devices", help="Lightning devices per node: N, 'auto' or '0,1'.")]
NodesOpt = Annotated[int | None, typer.Option("--num-nodes", min=1, help="Lightning nodes (multi-node DDP).")]
StrategyOpt = Annotated[str | None, typer.Option("--strategy", help="Lightning strategy, e.g. ddp, ddp_spawn, auto.")]


def _train_config(path: Path | None, set_: list[str] | None, section: str, devices: str | None,
                  num_nodes: int | None, strategy: str | None):  # noqa: ANN202 - Config
    """The config of a training command: ``--set`` overrides plus the scale-out options in ``<section>.train``."""
    options = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy}
    extra = [f"{section}.train.{key}={val}" for key, val in options.items() if val is not None]
    return _config(path, [*(set_ or []), *extra])


@train_app.command("pipeline")
@_terminal(lightning=True)
def train_pipeline_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Work folder; the bundle goes to OUT/model.")],
    config: ConfigOpt = None, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False,
    devices: DevicesOpt = None, num_nodes: NodesOpt = None, strategy: StrategyOpt = None, resume: ResumeOpt = False,
) -> None:
    """Train stage 1 and stage 2 and write a model bundle."""
    with _exits_on_error():
        from livercad.pipeline.training.orchestrate import train_pipeline

        cfg = _train_config(config, set_, "segment", devices, num_nodes, strategy)  # stage 2 is single-process
        res = train_pipeline(cfg, out, progress=not quiet, resume=resume)  # both stages' weights resolved first
    typer.echo(f"bundle: {res.bundle}")


@train_app.command("segment")
@_terminal(lightning=True)
def train_segment_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for segmenter.pt.")],
    config: ConfigOpt = None, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False,
    devices: DevicesOpt = None, num_nodes: NodesOpt = None, strategy: StrategyOpt = None, resume: ResumeOpt = False,
) -> None:
    """Train stage 1 (liver segmentation) on the configured manifest or phantom."""
    with _exits_on_error():
        from livercad.pipeline.training.preflight import ensure_run_weights

        cfg = _train_config(config, set_, "segment", devices, num_nodes, strategy)
        ensure_run_weights(cfg, segment=True)  # a missing weights file fails in seconds, before any data work
        from livercad.pipeline.training.orchestrate import cohort_rows  # Lightning, MONAI: after the check
        from livercad.segment.fit import train_segmenter

        ckpt = train_segmenter(cohort_rows(cfg, out), cfg, out, progress=not quiet, resume=resume)
    typer.echo(f"segmenter: {ckpt}")


@train_app.command("classify")
@_terminal(lightning=True)
def train_classify_cmd(
    segmenter: Annotated[Path, typer.Option(help="Stage-1 checkpoint whose predicted masks feed stage 2.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for classifier.pt.")],
    config: ConfigOpt = None, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False,
    devices: DevicesOpt = None, num_nodes: NodesOpt = None, strategy: StrategyOpt = None, resume: ResumeOpt = False,
) -> None:
    """Train stage 2 on stage-1 predictions (or ground truth for region oracle-mask)."""
    with _exits_on_error():
        from livercad.pipeline.training.preflight import ensure_run_weights

        cfg = _train_config(config, set_, "classify", devices, num_nodes, strategy)
        ensure_run_weights(cfg, classify=True)  # a missing weights file fails in seconds, before any data work
        from livercad.classify.fit import train_classifier  # Lightning: after the check
        from livercad.pipeline.training.orchestrate import cohort_rows, load_stage1, stage1_cache

        cache = stage1_cache(load_stage1(segmenter, cfg), cohort_rows(cfg, out), cfg)
        tr = [c.slices for c in cache if c.row.split == "train" and c.slices.label is not None]
        va = [c.slices for c in cache if c.row.split == "val" and c.slices.label is not None]
        train_classifier(tr, va, cfg.classify, out, seed=cfg.seed, progress=not quiet, resume=resume)
    typer.echo(f"classifier: {out / 'classifier.pt'}")
