"""Checks on a query image or `k` from outside (the page, its JSON API, the MLflow model's REST input):
the limits, the header-only refusal of what must not be decoded, and the one-line errors with the HTTP status
each answers with. No web framework here, so the MLflow model can use it without FastAPI.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a full-resolution MIMIC-CXR JPEG is 0.5-2 MB; DICOM-derived PNGs ~10 MB
MAX_PIXELS = (
    40_000_000  # MIMIC-CXR's largest images are ~4k x 4k (16 MP); far beyond that is damage or a bomb
)
MAX_K = 50
UPLOAD_FORMATS = ("JPEG", "PNG")
ACCEPTED_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # 8-bit modes; the decoder makes them gray


class ReadsImages(Protocol):
    """What `read_upload` needs of a `pipeline.retrieval.Retriever`."""

    def read_image(self, data: bytes, name: str = "image") -> Image.Image: ...


class UploadError(PipelineError):
    """An upload the page refuses; `status` is the HTTP status the API route answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    max_k: int = MAX_K


def check_upload(data: bytes, limits: Limits = Limits()) -> None:
    """Refuse what the model must not decode, from the header alone: empty, too many bytes or pixels, not
    JPEG/PNG, CMYK, 16-bit. Decoding (and with it truncation) is the `Retriever.read_image`'s, the same
    code as ``medprobclip retrieve`` and the shard stage."""
    if not data:
        raise UploadError(400, "the file is empty: choose a JPEG or PNG chest X-ray")
    if len(data) > limits.max_bytes:
        raise UploadError(413, f"the file is {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        except UnidentifiedImageError:
            raise UploadError(415, "not a JPEG or PNG image: upload a .jpg or .png X-ray") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UploadError(413, "the image claims too many pixels to decode safely") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UploadError(
                400,
                f"the {_kind(data)} file is truncated or damaged in its header ({exc}): "
                "upload a complete file",
            ) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise UploadError(
            413,
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}: "
            "downscale it first",
        )
    _check_mode(image)


def read_upload(retriever: ReadsImages, data: bytes, name: str, limits: Limits = Limits()) -> Image.Image:
    """Checked, then decoded exactly as the CLI decodes a query file; every failure an `UploadError`."""
    check_upload(data, limits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return retriever.read_image(data, name)
        except PipelineError as exc:  # QueryImageError: truncated, undecodable, too small
            raise UploadError(400, str(exc)) from None


def _kind(data: bytes) -> str:
    return "JPEG" if data.startswith(b"\xff\xd8") else "PNG" if data.startswith(b"\x89PNG") else "image"


def _check_mode(image: Image.Image) -> None:
    if image.mode == "CMYK":
        raise UploadError(
            415, "a CMYK JPEG (print colour) is not an X-ray export: save it as 8-bit grayscale or RGB"
        )
    if image.mode.startswith("I") or image.mode == "F":
        raise UploadError(
            415,
            f"a {image.mode} ({'16' if ';16' in image.mode else '32'}-bit) image: this page takes 8-bit "
            "images; window and export the X-ray as an 8-bit grayscale PNG or JPEG",
        )
    if image.mode not in ACCEPTED_MODES:
        raise UploadError(415, f"unsupported pixel mode {image.mode}: export as 8-bit grayscale or RGB")


def parse_k(value: Any, default: int, limits: Limits = Limits()) -> int:
    if value is None or value == "":
        return default
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise UploadError(400, f"k must be a whole number, got {str(value)[:20]!r}") from None
    if not 1 <= k <= limits.max_k:
        raise UploadError(400, f"k must be between 1 and {limits.max_k}, got {k}")
    return k


def synthetic_xray(size: int = 64) -> Image.Image:
    """A smooth synthetic chest-X-ray-like gray image (never a real one: examples end up in the registry
    and in screenshots)."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    lungs = np.exp(-(((np.abs(x) - 0.45) / 0.28) ** 2 + (y / 0.7) ** 2))
    pixels = 40 + 170 * (1 - lungs) * np.exp(-(y**2) / 2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
