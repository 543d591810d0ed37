"""CLI: help texts, exit codes, one-line errors."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import livercad.models
from livercad.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["predict"], ["train"], ["train", "segment"], ["phantom"], ["demo"],
                                 ["ablate"], ["evaluate"], ["convert"]])
def test_every_command_has_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_missing_bundle_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "nobundle"), "-i", str(tmp_path),
                              "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "not a livercad model bundle" in res.output


def test_bad_config_key_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "segment", "--out", str(tmp_path), "-s", "segment.model.encodr=x"])
    assert res.exit_code == 2 and "unknown key 'segment.model.encodr'" in res.output


def test_console_entry_exit_code_and_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "predict", "--model", str(tmp_path),
                           "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "\n" not in proc.stderr.strip()
    assert "Traceback" not in proc.stderr


def test_unknown_option_is_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "predict", "--bogus"], capture_output=True,
                          text=True)
    assert proc.returncode == 2


def test_phantom_command_writes_a_deterministic_cohort(tmp_path: Path) -> None:
    args = ["phantom", "--n", "3", "--modality", "ct", "--seed", "1", "--size", "48x48x10"]
    a = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    b = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "images"]) == 3
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_train_scale_out_options_reach_the_train_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.pipeline.training.orchestrate as ptrain
    import livercad.segment.fit as strain

    seen: dict[str, object] = {}
    monkeypatch.setattr(ptrain, "cohort_rows", lambda cfg, out: [])
    monkeypatch.setattr(strain, "train_segmenter", lambda rows, cfg, out, **kw: seen.setdefault("segment", cfg))
    monkeypatch.setattr(ptrain, "train_pipeline", lambda cfg, out, **kw: seen.setdefault("pipeline", cfg) and
                        ptrain.PipelineTraining(bundle=out, rows=[], stage1=[], classifier=None, timing={}))
    opts = ["--devices", "2", "--num-nodes", "3", "--strategy", "ddp", "--out", str(tmp_path)]
    for cmd in ("segment", "pipeline"):
        res = runner.invoke(app, ["train", cmd, *opts, "-s", "segment.train.devices=1",
                                  "-s", "segment.model.encoder_weights=none", "-s", "classify.weights=none"])
        assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["train", "segment", "--num-nodes", "0", "--out", str(tmp_path)]).exit_code == 2
    seg, pipe = seen["segment"].segment.train, seen["pipeline"]
    assert (seg.devices, seg.num_nodes, seg.strategy) == (2, 3, "ddp")  # the option wins over --set
    t = pipe.segment.train
    assert (t.devices, t.num_nodes, t.strategy) == (2, 3, "ddp")
    t = pipe.classify.train  # stage 2 trains in one process: `train pipeline` scales out stage 1 only
    assert (t.devices, t.num_nodes, t.strategy) == (1, 1, "auto")


@pytest.mark.parametrize("cmd", ["predict", "evaluate"])
def test_predict_and_evaluate_take_modality_and_an_optional_model(cmd: str) -> None:
    res = runner.invoke(app, [cmd, "--help"], terminal_width=200)
    assert res.exit_code == 0 and "--modality" in res.output and "--model" in res.output
    params = {p.name: p for p in typer.main.get_command(app).commands[cmd].params}  # type: ignore[attr-defined]
    assert not params["model"].required and params["modality"].default is None


def test_evaluate_attenuation_force_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.pipeline.predict.run as run
    from livercad.pipeline.predict.run import PipelineResult

    seen: list[object] = []

    def fake(*args: object, **kwargs: object) -> PipelineResult:
        seen.append(kwargs["attenuation_force"])
        return PipelineResult(output_dir=tmp_path, cases=[], metrics={"n_ok": 0})

    monkeypatch.setattr(run, "run_pipeline", fake)
    for extra in ([], ["--attenuation-force"]):
        res = runner.invoke(app, ["evaluate", "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "o"), *extra])
        assert res.exit_code == 0, res.output
    assert seen == [None, True]  # None: the bundle's inference.attenuation_force


def test_predict_without_model_and_no_default_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(livercad.models, "DEFAULT_BUNDLE", tmp_path / "not_installed")
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    res = runner.invoke(app, ["predict", "-i", str(tmp_path / "a.nii.gz"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "default liver model is not installed" in res.output and "--model" in res.output


# -- the terminal: one line per event, warnings in the run's log file, a bar only on a terminal ------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY_NOTE = re.compile(r"^(\d+) library warnings?, see (.+)$")
MICRO_TRAIN = ["-s", "data.phantom.n=6", "-s", "data.phantom.shape=[40, 40, 8]", "-s", "preprocess.image_size=32",
               "-s", "segment.model.encoder=tu-test_resnet", "-s", "segment.model.encoder_weights=none",
               "-s", "segment.train.max_epochs=2",
               "-s", "segment.train.steps_per_epoch=3", "-s", "segment.train.batch_size=4"]
# predict with what made `make demo` noisy: a stray root handler (basicConfig), Lightning's own handler,
# a Lightning tip, sklearn's and numpy's warnings
DRIVER = """
import logging, sys, warnings
import numpy as np
logging.basicConfig()
logging.getLogger("lightning").addHandler(logging.StreamHandler())
import livercad.pipeline.predict.predictor as predictor
from livercad.cli import main
original = predictor.Predictor.process
def process(self, case, folder, **kwargs):
    warnings.warn("A single label was found in 'y_true' and 'y_pred'.", UserWarning)
    np.float64(np.inf) - np.float64(np.inf)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("\\U0001F4A1 Tip: try the cloud")
    return original(self, case, folder, **kwargs)
predictor.Predictor.process = process
main()
"""


def _run_cli(args: list[str], *, tty: bool) -> tuple[int, str]:
    """Run ``python args`` with stdout and stderr on a pseudo-terminal (``tty``) or on pipes; (exit code, output)."""
    env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1", "TERM": "xterm-256color"}
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "PYTHONWARNINGS"):
        env.pop(var, None)
    cmd = [sys.executable, *args]
    if not tty:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=120)
        return proc.returncode, proc.stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536) if select.select([master], [], [], 120)[0] else b""
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def _visible_lines(raw: str) -> list[str]:
    """The lines left on the screen: escape codes removed, of each line what follows its last carriage return."""
    text = ANSI.sub("", raw.replace("\r\n", "\n"))
    return [seg for line in text.split("\n") if (seg := line.split("\r")[-1].strip())]


def _check_screen(raw: str, *, tty: bool, out: Path) -> list[str]:
    """No line twice, no warning text but the summary's note, bars only on the terminal; returns the lines."""
    lines = _visible_lines(raw)
    assert len(lines) == len(set(lines)), raw
    assert ("━" in raw) is tty, raw  # rich's bar
    assert "Tip" not in raw and "┏" not in raw, raw  # Lightning's tips and model summary
    notes = [m for m in map(SUMMARY_NOTE.match, lines) if m]
    assert len(notes) == 1 and Path(notes[0][2]) == out / "livercad.log", raw
    assert not [line for line in lines if "warn" in line.lower() and not SUMMARY_NOTE.match(line)], raw
    return lines


@pytest.fixture(scope="module")
def tiny_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a bundle of random 32-px networks, a folder of two small CT scans)."""
    from livercad.config import load_config
    from livercad.pipeline.bundle import write_bundle
    from tests.pipeline.conftest import SMALL, _ct_volume, random_classifier, random_segmenter

    root = tmp_path_factory.mktemp("cli_terminal")
    seg, clf = random_segmenter(root / "segmenter.pt"), random_classifier(root / "classifier.pt")
    bundle = write_bundle(root / "bundle", segmenter=seg, classifier=clf,
                          config=load_config(None, [*SMALL, "inference.report=false"]))
    (root / "scans").mkdir()
    for i in range(2):
        _ct_volume(root / "scans" / f"case_{i}.nii.gz", seed=i)
    return bundle, root / "scans"


@pytest.mark.parametrize("tty", [True, False], ids=["pty", "pipe"])
def test_predict_prints_each_event_once_and_keeps_warnings_in_the_log(tiny_cases: tuple[Path, Path], tmp_path: Path,
                                                                       tty: bool) -> None:
    bundle, scans = tiny_cases
    out = tmp_path / "out"
    code, raw = _run_cli(["-c", DRIVER, "predict", "--model", str(bundle), "-i", str(scans), "-o", str(out)], tty=tty)
    assert code == 0, raw
    lines = _check_screen(raw, tty=tty, out=out)
    assert int(SUMMARY_NOTE.match(lines[-1])[1]) >= 2  # the note ends the summary
    assert lines[-2].startswith("2 cases done, 0 failed")
    plain = [line for line in lines if line.startswith("cases [")]
    assert len(plain) == (0 if tty else 2) and "INFO" not in raw, raw
    log = (out / "livercad.log").read_text()
    assert "A single label was found" in log and "invalid value encountered in scalar subtract" in log
    assert "cases: 2 to run" in log  # livercad's INFO lines go to the file (the screen shows them with -v)


@pytest.mark.slow
def test_train_shows_steps_and_budget_without_lightning_chatter(tmp_path: Path) -> None:
    """On a terminal (plain lines without one are checked by the predict test: the same Progress code)."""
    tty = True
    out = tmp_path / "seg"
    code, raw = _run_cli(["-m", "livercad.cli", "train", "segment", "-o", str(out), *MICRO_TRAIN], tty=tty)
    assert code == 0, raw
    lines = _check_screen(raw, tty=tty, out=out)
    assert "GPU available" not in raw and "Trainer.fit" not in raw and "LeafSpec" not in raw
    assert any(re.search(r"stage 1.*step \d+/6.*budget left", line) for line in lines), raw
    assert lines[-2] == f"segmenter: {out / 'segmenter.pt'}"
    log = (out / "livercad.log").read_text()
    assert "GPU available" in log and "LeafSpec" in log and "Tip" not in log


def test_quiet_and_verbose_are_on_every_command() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, cmd in [*commands.items(), *commands["train"].commands.items()]:
        if name != "train":
            assert {"quiet", "verbose"} <= {p.name for p in cmd.params}, name


def test_repeated_commands_leave_one_handler(tmp_path: Path) -> None:
    import logging

    before = list(logging.getLogger().handlers)
    for _ in range(2):
        res = runner.invoke(app, ["predict", "--model", str(tmp_path / "nobundle"), "-i", str(tmp_path),
                                  "-o", str(tmp_path / "out"), "-v"])
        assert res.exit_code == 2 and res.output.count("not a livercad model bundle") == 1, res.output
    assert logging.getLogger().handlers == before
