"""The CT attenuation rule: Youden fit, the literature's cut-offs, the phase refusal, and the phantom's physics."""

from __future__ import annotations

import numpy as np
import pytest

from livercad.classify.attenuation import check_phase, fit_rule, literature_rule
from livercad.errors import ConfigError


def test_fit_literature_and_predictions() -> None:
    rule = fit_rule([62, 58, np.nan, 38, 31], [0, 0, 1, 1, 1])
    assert (rule.source, rule.n_fit, rule.threshold) == ("youden", 4, 48.0)
    np.testing.assert_array_equal(rule.predict([50, 47, np.nan]), [0, 1, 0])
    p = rule.probability([48.0, 28.0, 68.0])
    assert p[0] == 0.5 and p[1] > 0.85 and p[2] < 0.15
    assert literature_rule().threshold == 40.0 and literature_rule("liver_minus_spleen_hu").threshold == -10.0
    with pytest.raises(ConfigError, match="both classes"):
        fit_rule([50, 40], [1, 1])
    with pytest.raises(ConfigError, match="not one of"):
        literature_rule("spleen_hu")


def test_phase_refusal_is_one_line_unless_forced() -> None:
    assert check_phase("non-contrast") == "unenhanced" and check_phase(None) == "unknown"
    with pytest.raises(ConfigError, match="refused on portal-venous CT") as err:
        check_phase("portal-venous")
    assert "\n" not in str(err.value)
    assert check_phase("arterial", force=True) == "forced"


@pytest.mark.slow
def test_the_phantom_unenhanced_liver_follows_its_fat() -> None:
    """On the phantom's non-contrast CT, steatosis lowers liver HU by 50 × severity: the rule separates it."""
    from livercad.phantom import make_case
    from livercad.pipeline.predict.case_stats import liver_intensity

    hu, y = [], []
    for i, (label, sev) in enumerate([("normal", 0.05), ("normal", 0.1), ("steatosis", 0.6), ("steatosis", 0.8)]):
        case = make_case(f"c{i}", label=label, severity=sev, seed=i, shape=(48, 48, 12), ct_phase="non-contrast")
        hu.append(liver_intensity(case.image, case.mask, "ct")["liver_mean"])
        y.append(int(label == "steatosis"))
    rule = fit_rule(hu, y)
    np.testing.assert_array_equal(rule.predict(hu), y)
    assert hu[2] < hu[0] - 15 and hu[3] < hu[1] - 15
