"""Tests of livercad.pipeline.training.orchestrate.cohort_rows: the generated phantom cohorts."""

from __future__ import annotations

from pathlib import Path

import pytest

from livercad.config import load_config
from livercad.errors import ConfigError
from livercad.pipeline.training.orchestrate import cohort_rows

SMALL = ["data.phantom.randomise=true", "data.phantom.n=4", "data.phantom.shape=[40, 40, 10]"]


def test_anchor_adds_classic_phantom_cases_beside_the_randomised_ones(tmp_path: Path) -> None:
    plain = cohort_rows(load_config(None, SMALL), tmp_path / "plain")
    mixed = cohort_rows(load_config(None, [*SMALL, "data.phantom.anchor=3"]), tmp_path / "mixed")
    assert [r.case_id for r in plain] == [f"synth_{i:05d}" for i in range(4)]
    anchors = [r for r in mixed if r.case_id.startswith("case_")]
    assert len(mixed) == 7 and len(anchors) == 3
    # the randomised cases are the same files either way; the anchors are their own patients, all CT
    assert [(r.case_id, Path(r.image).read_bytes()) for r in mixed if r not in anchors] == \
        [(r.case_id, Path(r.image).read_bytes()) for r in plain]
    assert not {r.patient_id for r in anchors} & {r.patient_id for r in plain}
    assert {r.extra.get("modality") for r in anchors} == {"ct"}
    assert all(Path(r.image).parent.parent.name == "data_anchor" for r in anchors)
    assert all(r.split in ("train", "val", "test") for r in mixed)


def test_anchor_is_refused_below_zero() -> None:
    with pytest.raises(ConfigError, match="data.phantom.anchor"):
        load_config(None, [*SMALL, "data.phantom.anchor=-1"])


def test_anchor_without_a_randomised_cohort_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.phantom.n=4", "data.phantom.anchor=2"])
    with pytest.raises(ConfigError, match="data.phantom.anchor.*randomise: true"):
        cohort_rows(cfg, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was generated
