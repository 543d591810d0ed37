"""Where data comes from: the synthetic phantom or real scans (the domain of images and of trained stages).

One set of rules for every stage: a manifest row is ``phantom`` when its ``domain``/``source`` column says
so, or when it carries all the columns of one of the phantom generators' manifests; a cohort (a
``data.manifest``) is ``phantom`` when every row is, and the generated default cohort (no manifest) is.
Trained checkpoints record it as ``training_domain``; prediction flags verdicts of a phantom-trained
classifier on real scans.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: Column sets only the phantom's manifests have: ``livercad phantom`` (:mod:`livercad.phantom.cohort`)
#: and the domain-randomised cohort (:mod:`livercad.phantom.synth`); both also write ``domain: phantom``.
PHANTOM_SIGNATURES = (frozenset({"severity", "site_scale", "site_offset", "site_noise", "site_artifact"}),
                      frozenset({"contrast", "spacing_x", "spacing_z", "shape"}))
#: Values of a ``domain``/``source`` column that mean "synthetic phantom" (case-insensitive).
PHANTOM_WORDS = frozenset({"phantom", "synthetic", "simulated", "livercad-phantom"})
DOMAIN_COLUMNS = ("domain", "source")


def extra_value(extra: Mapping[str, str] | None, column: str) -> str | None:
    """The non-empty value of a manifest's extra ``column`` (name matched case-insensitively), else ``None``."""
    for key, value in (extra or {}).items():
        if key.strip().lower() == column and value and value.strip():
            return value.strip()
    return None


def case_domain(extra: Mapping[str, str] | None) -> str:
    """``phantom`` or ``real``: where a manifest row's image comes from.

    A ``domain`` or ``source`` column decides when the row fills it (``phantom``, ``synthetic``,
    ``simulated``: phantom; any other value: real); otherwise a row with all the columns of one of the
    phantom's manifests (:data:`PHANTOM_SIGNATURES`) is phantom. Anything else, folders and files included,
    is real.

    Example:
        >>> case_domain({"severity": "0.2", "site_scale": "1", "site_offset": "0", "site_noise": "1",
        ...              "site_artifact": "0"}), case_domain({"source": "Synthetic"}), case_domain({"site": "A"})
        ('phantom', 'phantom', 'real')
    """
    for column in DOMAIN_COLUMNS:
        value = extra_value(extra, column)
        if value is not None:
            return "phantom" if value.lower() in PHANTOM_WORDS else "real"
    names = {k.strip().lower() for k in (extra or {})}
    return "phantom" if any(sig <= names for sig in PHANTOM_SIGNATURES) else "real"


def config_domain(manifest: str | Path | None) -> str:
    """Training domain of a cohort given as ``data.manifest``: ``None`` (the generated phantom) is ``phantom``.

    A manifest is ``phantom`` when every row is (:func:`case_domain`: a ``domain``/
    ``source`` column, or the phantom's own columns), ``real`` otherwise, ``unknown`` when it cannot be read.
    """
    if manifest is None:
        return "phantom"
    from livercad.errors import InputError
    from livercad.io.manifest import read_manifest

    try:
        rows = read_manifest(manifest, check_files=False)
    except InputError:
        return "unknown"
    return "phantom" if rows and all(case_domain(r.extra) == "phantom" for r in rows) else "real"
