"""The ``livercad`` command line (typer). Thin: parses, calls the library, maps errors to exit codes.

Exit codes: 0 every case done; 3 finished but some cases failed; 2 usage, input or config error;
1 internal error.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from livercad.errors import ConfigError, LivercadError
from livercad.runtime.terminal import command as _terminal

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="livercad: liver segmentation -> classification, batch prediction and ablations.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (or preset name).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override, e.g. classify.region=crop")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final summary.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Also livercad's INFO lines and Lightning's own "
                                          "output (progress bar, model summary).")]
ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Model bundle folder (default: the liver "
                                               "model shipped with livercad, segmentation only).")]
ModalityOpt = Annotated[str | None, typer.Option("--modality", help="ct | mr | mr-t2 | us, for cases whose manifest "
                                                  "row names none (default: guessed from the intensities).")]
MasksOpt = Annotated[Path | None, typer.Option("--masks", help="Another tool's masks as stage 1: CASE/liver.nii.gz "
                                               "(TotalSegmentator) or CASE.nii.gz multi-label files.")]
MaskLabelsOpt = Annotated[str | None, typer.Option("--mask-labels", help="Label map of multi-label masks: total | "
                                                   "total_mr | an nnU-Net dataset.json.")]


def _report(exc: BaseException) -> int:
    """Print the one-line message of an error on stderr; its exit code (2 for a LivercadError, else 1)."""
    if isinstance(exc, LivercadError):
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        return EXIT_USAGE
    typer.echo(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}", err=True)
    return EXIT_INTERNAL


def _fail(exc: BaseException) -> None:
    raise typer.Exit(_report(exc))


@contextmanager
def _exits_on_error() -> Iterator[None]:
    """A :class:`LivercadError` raised inside becomes its one-line message and exit code 2 (:func:`_fail`)."""
    try:
        yield
    except LivercadError as exc:
        _fail(exc)


def _config(path: Path | None, overrides: list[str] | None):  # noqa: ANN202 - Config
    from livercad.config import load_config

    return load_config(path, overrides or [])


@app.command()
@_terminal(log=False)  # the cohort folder holds data only
def phantom(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (images/, masks/, manifest.csv).")],
    n: Annotated[int, typer.Option(help="Number of cases.")] = 60,
    modality: Annotated[str, typer.Option(help="ct | mr-t2 | us")] = "ct",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    size: Annotated[str, typer.Option(help="Volume shape, e.g. 128x128x48.")] = "128x128x48",
    orientations: Annotated[str, typer.Option(help="mixed | canonical")] = "mixed",
    sites: Annotated[int, typer.Option(help="Number of scanner sites (intensity/noise/artifact).")] = 1,
    shortcut: Annotated[bool, typer.Option(help="Site artifact correlated with the label in train only.")] = False,
    ct_phase: Annotated[str, typer.Option(help="CT contrast phase: portal-venous | non-contrast.")] = "portal-venous",
    phases: Annotated[str, typer.Option(help="Further CT phases of each case, comma-separated (non-contrast, "
                                        "arterial, portal-venous, delayed): manifest columns image_<phase>.")] = "",
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Generate a synthetic abdominal cohort with liver masks and disease labels."""
    from livercad.phantom import generate_cohort

    try:
        shape = tuple(int(x) for x in size.lower().split("x"))
        if len(shape) != 3:
            raise ConfigError(f"--size must look like 128x128x48, got '{size}'")
        extra = tuple(p.strip() for p in phases.split(",") if p.strip())
        path = generate_cohort(out, n=n, modality=modality, seed=seed, shape=shape,  # type: ignore[arg-type]
                               orientations=orientations, sites=sites, shortcut=shortcut, ct_phase=ct_phase,
                               phases=extra)
    except (LivercadError, ValueError) as exc:
        _fail(exc if isinstance(exc, LivercadError) else ConfigError(str(exc)))
    typer.echo(f"wrote {n} cases; manifest: {path}")


@app.command()
@_terminal()
def predict(
    input_: Annotated[Path, typer.Option("--input", "-i", help="NIfTI/DICOM/PNG/JPEG file, a folder of them "
                                         "(each DICOM series a case), or a manifest CSV.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOpt = None, modality: ModalityOpt = None,
    output_format: Annotated[str, typer.Option(help="nifti | dicom-seg | both (DICOM-SEG: DICOM input)")] = "nifti",
    spacing: Annotated[tuple[float, float] | None, typer.Option(
        help="Pixel spacing (mm, between columns then rows) of 2-D images that carry none.")] = None,
    resume: Annotated[bool, typer.Option(help="Skip cases already finished in OUT.")] = False,
    split: Annotated[str | None, typer.Option(help="With a manifest: only this split.")] = None,
    engine: Annotated[str | None, typer.Option(help="local | ray")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray).")] = None,
    masks: MasksOpt = None, mask_labels: MaskLabelsOpt = None,
    channels_axis: Annotated[bool | None, typer.Option(
        "--channels-axis/--no-channels-axis", help="A 4-D NIfTI holds a multi-phase model's images along its 4th "
        "axis (default: the bundle's data.channels_axis).")] = None,
    config: ConfigOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Segment (and classify, when the bundle has a classifier) every case; masks keep each input's exact grid."""
    with _exits_on_error():
        from livercad.pipeline.predict.run import run_pipeline

        res = run_pipeline(input_, out, model=model, config=config, resume=resume, progress=not quiet,
                           split=split, engine=engine, address=address, modality=modality,
                           output_format=output_format, spacing=spacing, masks=masks, mask_labels=mask_labels,
                           channels_axis=channels_axis)
    _summary(res, out)


@app.command()
@_terminal()
def evaluate(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest CSV with masks and labels.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOpt = None, modality: ModalityOpt = None,
    split: Annotated[str | None, typer.Option(help="Only this split (e.g. test).")] = "test",
    masks: MasksOpt = None, mask_labels: MaskLabelsOpt = None,
    attenuation_force: Annotated[bool, typer.Option(
        "--attenuation-force", help="Score the attenuation rule on contrast-enhanced CT too (left out otherwise).")
    ] = False,
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Predict a manifest split and print its metrics (Dice, HD95, AUC… with 95 % CIs)."""
    with _exits_on_error():
        from livercad.pipeline.predict.run import run_pipeline

        res = run_pipeline(manifest, out, model=model, split=split, progress=not quiet, modality=modality,
                           masks=masks, mask_labels=mask_labels, attenuation_force=attenuation_force or None)
    from livercad.pipeline.predict.summary import headline

    typer.echo(json.dumps(headline(res.metrics), indent=2))
    raise typer.Exit(EXIT_PARTIAL if res.failures else EXIT_OK)


def _summary(res: Any, out: Path) -> None:
    """Print a run's (``PipelineResult``) outcome in one line and each failure; exit 0, or 3 when some failed."""
    n_fail, flagged = len(res.failures), sum(c.verdict_status == "out-of-domain" for c in res.cases)
    note = f"; {flagged} verdicts out-of-domain (classifier trained on the phantom only)" if flagged else ""
    typer.echo(f"{len(res.cases) - n_fail} cases done, {n_fail} failed; outputs in {out}{note}")
    for f in res.failures:
        typer.echo(f"  failed {f.case_id}: {f.error}", err=True)
    raise typer.Exit(EXIT_PARTIAL if n_fail else EXIT_OK)


@app.command()
@_terminal(log=False)
def convert(
    src: Annotated[Path, typer.Argument(help="Dataset root (MSD, nnU-Net raw or LiTS layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")],
    layout: Annotated[str, typer.Option(help="auto|msd|nnunet|lits|chaos|amos|flare22|totalseg")] = "auto",
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Write a livercad manifest for a public dataset layout."""
    with _exits_on_error():
        from livercad.io.convert import convert_dataset

        rows = convert_dataset(src, out, layout)
    typer.echo(f"wrote {len(rows)} cases; manifest: {out}")


@app.command()
@_terminal(lightning=True)
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_out"),
    fast: Annotated[bool, typer.Option(help="A smaller, quicker demo (< 3 min).")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Phantom cohort -> train both stages -> predict the test split -> ablation -> report."""
    with _exits_on_error():
        from livercad.pipeline.training.demo import run_demo

        summary = run_demo(out, fast=fast, config=config, overrides=set_ or [], progress=not quiet)
    typer.echo(summary["table"])
    typer.echo(f"report: {summary['report']}")


@app.command()
@_terminal(lightning=True)
def ablate(
    config: ConfigOpt = None, set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("ablation_out"),
    segmenter: Annotated[Path | None, typer.Option(
        "--segmenter", help="Reuse this trained stage 1 (segmenter.pt or a bundle folder) instead of training one."
    )] = None,
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Segmentation-impact ablation: region modes x strategies x backbones x seeds, paired tests."""
    with _exits_on_error():
        from livercad.pipeline.study.ablation import run_ablation_from_config

        res = run_ablation_from_config(_config(config, set_), out, progress=not quiet, segmenter=segmenter)
    typer.echo(f"report: {res['report']}")


def main() -> None:
    """Console entry point with exit codes (unexpected errors -> 1, no traceback)."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except LivercadError as exc:
        sys.exit(_report(exc))
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click/typer usage errors
            exc.show()
            sys.exit(EXIT_USAGE)
        code = _report(exc)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        sys.exit(code)


from livercad import cli_models, cli_train  # noqa: E402, F401 - register `livercad export` and `livercad train`

if __name__ == "__main__":  # python -m livercad.cli: run the imported module's app, which has every command
    from livercad.cli import main as _main

    _main()
