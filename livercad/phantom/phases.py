"""Multi-phase phantom CT: further contrast phases rendered from the same label map as a case's image.

A multi-phase case is one anatomy imaged several times: the case's ``image`` in its ``ct_phase`` (portal-venous
by default) and each further phase of :data:`PHASES` (non-contrast, arterial, portal-venous, delayed; the tissue
tables of :data:`livercad.phantom.tables.CT_PHASE_TABLES`) on the very same grid, so one mask fits them all.
Each further phase has its own noise and per-case tissue draw (seeded by the case seed and the phase), drawn
after the case's image, which is therefore the same with or without further phases. A cohort writes them as
``image_<phase>`` manifest columns (:func:`phase_column`), which :mod:`livercad.io.channels` reads.

Example:
    >>> phase_column("non-contrast"), phase_column("arterial")
    ('image_noncontrast', 'image_arterial')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from livercad.errors import ConfigError
from livercad.phantom.anatomy import Patient
from livercad.phantom.contrast import SiteEffect, render_ct
from livercad.phantom.tables import CT_PHASE_TABLES

#: The CT phases a multi-phase phantom case can have, in their order of acquisition.
PHASES: tuple[str, ...] = tuple(CT_PHASE_TABLES)


def phase_column(phase: str) -> str:
    """The manifest column of a phase's image: ``image_`` and the phase name without hyphens."""
    return "image_" + phase.replace("-", "")


def check_phases(phases: Sequence[str], ct_phase: str, modality: str) -> tuple[str, ...]:
    """``phases`` when a phantom cohort can render them beside its ``ct_phase`` images, else raise.

    Raises:
        ConfigError: a modality other than CT, an unknown or repeated phase, or the image's own phase.
    """
    out = tuple(phases)
    if not out:
        return out
    if modality != "ct":
        raise ConfigError(f"phantom phases {list(out)} need modality ct, got {modality!r}")
    bad = [p for p in out if p not in PHASES]
    if bad or len(set(out)) != len(out) or ct_phase in out:
        raise ConfigError(f"phantom phases must be distinct names from {list(PHASES)} other than the image's own "
                          f"ct_phase {ct_phase!r}; got {list(out)}")
    return out


def phase_seed(seed: int, phase: str) -> list[int]:
    """The seed of a further phase's random draws (the case seed and the phase's place in :data:`PHASES`)."""
    return [int(seed), 11, PHASES.index(phase)]


def render_ct_phase(labels: np.ndarray, p: Patient, rng: np.random.Generator, vox: np.ndarray, site: SiteEffect,
                    artifact: np.ndarray, phase: str) -> np.ndarray:
    """CT image in HU of a canonical label volume in ``phase`` (any of :data:`PHASES`).

    :func:`~livercad.phantom.contrast.render_ct` with the phase's table of
    :data:`~livercad.phantom.tables.CT_PHASE_TABLES` (the same tables for the phases ``render_ct`` knows).
    """
    return render_ct(labels, p, rng, vox, site, artifact, table=CT_PHASE_TABLES[phase])


__all__ = ["PHASES", "check_phases", "phase_column", "phase_seed", "render_ct_phase"]
