"""Decoding DICOM pixel data to modality values (HU for CT), through pydicom's pixel-data decoders.

Decoder choice, measured with :func:`time_decoders` (2026-12-06, this 2-core VM with a training job
beside it, load ~3; pydicom 3.0.2 with every decoding plugin installed; median of 5 rounds of 15 decodes;
all plugins gave identical arrays wherever they succeeded). The 512x512 rows are a synthetic CT slice
encoded by pydicom's own encoders (JPEG lossless by ``gdcmconv``); the other rows are files pydicom ships:

================================  ==========  ===========  ========  =========  =======
image                             pylibjpeg   python-gdcm  pyjpegls  pillow     pydicom
================================  ==========  ===========  ========  =========  =======
512x512 int16 CT, J2K lossless    43.0 ms     41.1 ms      --        43.3 ms    --
512x512 int16 CT, JPEG-LS         28.6 ms     10.5 ms      8.6 ms    --         --
512x512 int16 CT, RLE             0.42 ms     --           --        --         2.36 ms
512x512 int16 CT, JPEG lossless   13.9 ms     9.0 ms       --        --         --
JPEG2000.dcm (1024x256)           1.40 ms     3.43 ms      --        1.66 ms    --
JPGExtended.dcm (12-bit JPEG)     1.85 ms     fails        --        fails      --
pydicom's compressed test files   37 of 39    27 of 30     5 of 5    20 of 24   9 of 9
================================  ==========  ===========  ========  =========  =======

(An earlier, single-round run gave J2K 26.8 ms pylibjpeg vs 29.6 ms GDCM: the two are equal within the
noise of this machine.) Chosen: ``pylibjpeg[all]`` (pylibjpeg-openjpeg, -libjpeg, -rle) plus ``pyjpegls``
(already required by highdicom). pylibjpeg decodes the most files (its two failures fail with every
plugin), including 12-bit JPEG (GDCM and Pillow fail) and HTJ2K (no other plugin); it is 5x faster than
pydicom's own RLE decoder and ties GDCM on JPEG 2000, and it installs a few MB where python-gdcm takes
43 MB. JPEG-LS goes to pyjpegls (the fastest). GDCM is 1.5x faster for JPEG lossless (9 vs 14 ms a
512x512 slice, about 1.5 s more for a 300-slice series), not enough to make a 43 MB package a dependency:
when python-gdcm is installed anyway it is preferred for JPEG lossless (:data:`PREFERRED_PLUGINS`, first
installed plugin wins). If the preferred plugin fails on a file, every other installed plugin is tried
before the file is refused.

Example:
    >>> import pydicom
    >>> from pydicom.data import get_testdata_file
    >>> ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    >>> hu = modality_values(ds, "CT_small.dcm")
    >>> hu.dtype, hu.shape, float(hu.min())
    (dtype('float32'), (128, 128), -896.0)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless

#: Decoding plugins in order of preference per transfer syntax (the first installed one is used; see above).
PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    JPEGLSLossless: ("pyjpegls", "pylibjpeg"), JPEGLSNearLossless: ("pyjpegls", "pylibjpeg"),
    JPEGLossless: ("gdcm", "pylibjpeg"), JPEGLosslessSV1: ("gdcm", "pylibjpeg"),
}
DEFAULT_PLUGINS: tuple[str, ...] = ("pylibjpeg",)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R BT.601


class PixelError(ValueError):
    """Pixel data that cannot be decoded; the message is one line."""


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax UID (Implicit VR Little Endian when the file meta lacks one)."""
    meta = getattr(ds, "file_meta", None)
    return UID((meta.get("TransferSyntaxUID") if meta is not None else None) or "1.2.840.10008.1.2")


def _plugin_for(uid: UID) -> str:
    """The first installed preferred plugin for ``uid``, or ``""`` (let pydicom try every one).

    Example:
        >>> from pydicom.uid import ExplicitVRLittleEndian, RLELossless
        >>> _plugin_for(RLELossless), _plugin_for(ExplicitVRLittleEndian)
        ('pylibjpeg', '')
    """
    decoder = get_decoder(uid)
    if decoder.is_native:
        return ""
    installed = decoder.available_plugins
    return next((p for p in PREFERRED_PLUGINS.get(uid, DEFAULT_PLUGINS) if p in installed), "")


def _check_decodable(ds: Dataset) -> UID:
    uid = transfer_syntax(ds)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        name = uid.name if uid.is_transfer_syntax else "unknown"
        raise PixelError(f"transfer syntax {uid} ({name}) cannot be decoded: not an image transfer syntax "
                         f"pydicom supports") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no decoding plugin"
        raise PixelError(f"no decoder installed for transfer syntax {uid} ({uid.name}): {missing}")
    if "PixelData" not in ds:
        raise PixelError("no pixel data: the file is truncated or holds no image")
    return uid


def decode_stored(ds: Dataset) -> np.ndarray:
    """Stored values of a single-frame image, ``(rows, columns)`` or ``(rows, columns, 3)`` (RGB).

    Raises:
        PixelError: unknown/undecodable transfer syntax, missing decoder, truncated or corrupt data,
            or more than one frame.
    """
    uid = _check_decodable(ds)
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise PixelError(f"multi-frame image ({frames} frames) is not supported: pass single-frame images "
                         f"(or convert the file with dcm2niix and pass the NIfTI)")
    plugin = _plugin_for(uid)
    try:
        try:
            return pixel_array(ds, decoding_plugin=plugin)
        except Exception:
            if not plugin:
                raise
            return pixel_array(ds)  # every installed plugin, in pydicom's order
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises ValueError, RuntimeError, AttributeError, struct errors, ...
        text = " ".join(str(exc).split())
        raise PixelError(f"truncated or corrupt pixel data ({uid.name}): {text[:300]}") from exc


def _gray(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Colour -> one channel: identical channels kept as they are, else BT.601 luminance."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 2:
        return arr
    if arr.shape[-1] == 1 or (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
        return arr[..., 0]
    return arr[..., :3].astype(np.float64) @ _LUMA


def _invert_monochrome1(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """MONOCHROME1 (low values white) -> MONOCHROME2 over the stored value range."""
    if str(ds.get("PhotometricInterpretation", "")).upper() != "MONOCHROME1":
        return arr
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return (lo + hi) - arr.astype(np.int64)


def modality_values(ds: Dataset, file: str | Path) -> np.ndarray:
    """Decoded pixels with the modality LUT or RescaleSlope/RescaleIntercept applied, float32 ``(rows, columns)``.

    Colour images become one channel (identical channels kept, else BT.601 luminance); MONOCHROME1 is
    inverted to MONOCHROME2 before rescaling.

    Raises:
        PixelError: see :func:`decode_stored`; also non-finite values after rescaling.
    """
    arr = _gray(decode_stored(ds), ds)
    if arr.dtype.kind in "iu":
        arr = _invert_monochrome1(arr, ds)
        arr = apply_modality_lut(arr, ds)
    out = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise PixelError(f"RescaleSlope {ds.get('RescaleSlope')} / RescaleIntercept {ds.get('RescaleIntercept')} "
                         f"give non-finite values in {Path(file).name}")
    return out


def time_decoders(datasets: dict[str, Dataset], repeats: int = 10) -> dict[str, dict[str, float | None]]:
    """Median decode time (s) of each installed plugin per dataset (``None``: the plugin failed).

    Example:
        >>> import pydicom
        >>> from pydicom.data import get_testdata_file
        >>> ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm", download=False))
        >>> sorted(time_decoders({"rle": ds}, repeats=1)["rle"])
        ['pydicom', 'pylibjpeg']
    """
    import statistics
    import time

    table: dict[str, dict[str, float | None]] = {}
    for name, ds in datasets.items():
        row: dict[str, float | None] = {}
        for plugin in get_decoder(transfer_syntax(ds)).available_plugins:
            times = []
            try:
                for _ in range(repeats):
                    start = time.perf_counter()
                    pixel_array(ds, decoding_plugin=plugin)
                    times.append(time.perf_counter() - start)
            except Exception:  # a plugin that cannot decode this file
                row[plugin] = None
                continue
            row[plugin] = statistics.median(times)
        table[name] = row
    return table


__all__ = ["DEFAULT_PLUGINS", "PREFERRED_PLUGINS", "PixelError", "decode_stored", "modality_values", "time_decoders",
           "transfer_syntax"]
