"""One record of the software versions, written by both stages, bundles and runs."""

from __future__ import annotations

import torch

import livercad
from livercad.runtime.provenance import LIBRARIES, versions


def test_versions_name_the_package_the_libraries_and_the_platform() -> None:
    v = versions()
    assert set(v) == {*LIBRARIES, "python", "platform"}
    assert v["torch"] == torch.__version__ and v["livercad"] == livercad.__version__
    assert all(isinstance(x, str) and x for x in v.values())
