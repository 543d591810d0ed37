"""The CLI's terminal set-up: one handler, warnings into the log file only, verbosity, progress backends."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from livercad.runtime import progress
from livercad.runtime.progress import Progress, TrainingBar, training_progress
from livercad.runtime.terminal import LOG_NAME, Terminal, verbosity

BAR = "━"  # rich's bar character


def _emit_everything() -> None:
    """One record of every kind the terminal sorts, and two Python warnings."""
    logging.getLogger("livercad.progress").info("cases [1/2] a done")
    logging.getLogger("livercad.pipeline.predict.run").info("2 cases: 2 to run")
    logging.getLogger("livercad.pipeline.predict.run").warning("livercad itself warns")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: For seamless cloud logging ...")
    logging.getLogger("lightning.fabric.utilities.distributed").info("Initializing distributed: MEMBER: 1/2")
    logging.getLogger("some.library").warning("a library record at WARNING")
    logging.getLogger("some.library").error("a library error")
    warnings.warn("A single label was found in 'y_true' and 'y_pred'.", UserWarning, stacklevel=1)
    with np.errstate(invalid="warn"):
        np.float64(np.inf) - np.float64(np.inf)  # RuntimeWarning: invalid value encountered in scalar subtract


@pytest.mark.parametrize("level, shown, hidden", [
    ("quiet", ["a library error"], ["cases [1/2]", "livercad itself warns", "GPU available", "MEMBER"]),
    ("normal", ["cases [1/2] a done", "livercad itself warns", "a library error", "MEMBER: 1/2"],
     ["2 cases: 2 to run", "GPU available", "Tip", "a library record"]),
    ("verbose", ["cases [1/2]", "2 cases: 2 to run", "GPU available", "Tip", "a library record", "MEMBER"], []),
])
def test_each_verbosity_shows_its_records_once_and_no_python_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], level: str, shown: list[str], hidden: list[str]) -> None:
    lightning_handler = logging.StreamHandler()  # what `import lightning` installs: every line came twice
    logging.getLogger("lightning").addHandler(lightning_handler)
    try:
        with warnings.catch_warnings(), Terminal(level, tmp_path) as term:
            warnings.simplefilter("always")
            _emit_everything()
            note = term.note()
    finally:
        logging.getLogger("lightning").removeHandler(lightning_handler)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), err
    for text in shown:
        assert sum(text in line for line in lines) == 1, (text, err)
    for text in [*hidden, "single label", "invalid value", "Warning"]:
        assert text not in err, (text, err)
    log = (tmp_path / LOG_NAME).read_text()
    assert "A single label was found" in log and "invalid value encountered in scalar subtract" in log
    assert "2 cases: 2 to run" in log and "GPU available" in log and ("Tip" in log) == (level == "verbose")
    # counted: the two Python warnings and the library's WARNING record (not livercad's own, not errors)
    assert note == f"3 library warnings, see {tmp_path / LOG_NAME}"


def test_leaving_the_terminal_restores_logging_and_warnings(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, warnings.showwarning, logging.getLogger("py.warnings").propagate)
    with Terminal("normal", tmp_path):
        assert sum(type(h).__module__ == "livercad.runtime.terminal" for h in root.handlers) == 2  # screen + log file
        assert logging.getLogger("lightning").handlers == [] and logging.getLogger("lightning").propagate
    after = (list(root.handlers), root.level, warnings.showwarning, logging.getLogger("py.warnings").propagate)
    assert after == before
    assert not (tmp_path / LOG_NAME).exists()  # nothing was logged: no file


def test_a_basic_config_handler_is_replaced_not_doubled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    stray = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(stray)
    try:
        with Terminal("normal", tmp_path):
            logging.getLogger("livercad.progress").info("only once")
    finally:
        logging.getLogger().removeHandler(stray)
    assert capsys.readouterr().err.count("only once") == 1


def test_without_an_output_folder_warnings_are_counted_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(), Terminal("verbose", None) as term:
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", FutureWarning, stacklevel=1)
        assert term.note() == "1 library warning, not kept (no output folder)"
    assert "deprecated" not in capsys.readouterr().err
    assert verbosity(True, True) == "quiet"


def test_progress_draws_a_bar_on_a_terminal_and_lines_elsewhere(caplog: pytest.LogCaptureFixture) -> None:
    screen = io.StringIO()
    progress.configure(Console(file=screen, force_terminal=True, width=100))
    try:
        with caplog.at_level(logging.INFO, logger="livercad.progress"), Progress(2, description="cases") as bar:
            bar.advance("case_a")
            bar.advance("case_b", "FAILED: unreadable")
    finally:
        progress.configure()
    assert BAR in screen.getvalue() and "2/2" in screen.getvalue()
    assert [r.getMessage() for r in caplog.records] == ["case_b FAILED: unreadable"]  # only the failure
    caplog.clear()
    progress.configure(Console(file=io.StringIO(), force_terminal=False))
    try:
        with caplog.at_level(logging.INFO, logger="livercad.progress"), Progress(2, description="cases") as bar:
            bar.advance("case_a")
    finally:
        progress.configure()
    assert len(caplog.records) == 1 and caplog.records[0].getMessage().startswith("cases [1/2] case_a done (eta ")


def test_training_bar_reports_steps_scores_and_budget_left(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    budget = SimpleNamespace(budget_s=120.0, total_steps=40, elapsed=lambda: 30.0)
    trainer = SimpleNamespace(is_global_zero=True, global_step=10, sanity_checking=False,
                              callback_metrics={"val_dice": torch.tensor(0.91234), "train_loss": torch.tensor(0.3)})
    bar = TrainingBar(budget, "stage 1")
    progress.configure(Console(file=io.StringIO(), force_terminal=False))
    try:
        with caplog.at_level(logging.INFO, logger="livercad.progress"):
            bar.on_train_start(trainer, None)
            bar.on_train_batch_end(trainer)
            bar.on_validation_end(trainer, None)
            bar.on_train_end(trainer, None)
    finally:
        progress.configure()
    assert [r.getMessage() for r in caplog.records] == [
        "stage 1: step 10/40, val_dice 0.912; budget left 1 min 30 s", "stage 1: finished at step 10 after 30 s"]
    assert bar._state(10)["completed"] == pytest.approx(0.25)  # steps and time both at a quarter


def test_training_progress_chooses_between_livercad_and_lightning_bars() -> None:
    from livercad.runtime.budget import TimeBudget

    budget = TimeBudget(60.0, 1, 10)
    assert training_progress([budget], enabled=False, description="s") == ([budget], False)
    assert training_progress([budget], enabled=True, description="s") == ([budget], True)  # library default
    progress.configure(lightning_output=False)  # the CLI without --verbose
    try:
        callbacks, lightning_own = training_progress([budget], enabled=True, description="s")
    finally:
        progress.configure()
    assert not lightning_own and callbacks[0] is budget and isinstance(callbacks[1], TrainingBar)
