"""``livercad export``: commands about model bundles, registered on :data:`livercad.cli.app`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from livercad.cli import EXIT_INTERNAL, ModelOpt, QuietOpt, VerboseOpt, _exits_on_error, app
from livercad.runtime.terminal import command as _terminal


@app.command()
@_terminal(log=False)  # the export folder holds the exported files and export.json only
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (files + export.json).")],
    model: ModelOpt = None,
    format_: Annotated[str, typer.Option("--format", help="onnx | torchscript")] = "onnx",
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
) -> None:
    """Export each stage of a bundle and check it against torch on a phantom CT (export.json)."""
    with _exits_on_error():
        from livercad.pipeline.bundle import resolve_bundle_path
        from livercad.pipeline.export import export_bundle

        results = export_bundle(resolve_bundle_path(model), out, format_)
    for r in results:
        verdict = "ok" if r.ok else "FAILED"
        typer.echo(f"{r.stage}: {out / r.file} ({verdict}: max probability difference {r.max_abs_diff:.2e}, "
                   f"decisions agree {r.agreement:.4f})")
    if not all(r.ok for r in results):
        raise typer.Exit(EXIT_INTERNAL)
