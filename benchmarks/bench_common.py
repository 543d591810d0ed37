"""Small helpers shared by the benchmark scripts (run as scripts from any folder: ``benchmarks/`` is on sys.path)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import resource
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_mb() -> float:
    """Peak resident set size of this process so far (MiB, ``getrusage``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_result(text: str, name: str, folder: Path = RESULTS) -> Path:
    """Write ``text`` to ``folder/<date>_<name>.json`` without ever replacing an earlier result.

    When that file exists (a second run the same day) the name gets ``_2``, ``_3``, ...; the file is
    written to a temporary name first and renamed, so a crash never leaves half a JSON.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}_{name}"
    path, n = folder / f"{stem}.json", 2
    while path.exists():
        path, n = folder / f"{stem}_{n}.json", n + 1
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.rename(path)
    return path


def finish(result: dict[str, Any], name: str, *, save: bool = True) -> str:
    """Add peak RSS to ``result``, print it as JSON and (``save``) write it with :func:`write_result`."""
    result["peak_rss_mb"] = round(rss_mb(), 1)
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if save:
        print(f"written {write_result(text, name)}")
    return text


def make_volumes(n: int, shape: tuple[int, int, int], out: Path) -> list[Path]:
    """``n`` phantom CT volumes (seeds 0..n-1) saved as int16 ``.nii.gz`` (the realistic on-disk form) in ``out``.

    The benchmarks' common test volumes; livercad is imported here, not at module level, so this module
    stays light for every script.
    """
    import numpy as np

    from livercad.io.nifti import save_volume
    from livercad.phantom import CLASSES, make_case

    paths = []
    for i in range(n):
        case = make_case(f"bench{i}", modality="ct", shape=shape, seed=i, label=CLASSES[i % 3])
        paths.append(save_volume(case.image, case.affine, out / f"bench{i}.nii.gz", dtype=np.int16))
    return paths
