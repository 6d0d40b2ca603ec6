"""Reading, checking and resizing the release's grayscale JPEGs.

The shard stage touches every one of ~377k full-resolution images once, so decoding is the cost that
matters: libjpeg can decode at 1/2, 1/4 or 1/8 scale almost for free (Pillow's draft mode), which leaves
only a small high-quality resize. Every way an image can be unusable maps to one reason from a closed set,
so a bad file is a counted reject and never a traceback.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.paths import UnsafePathError, resolve_under

IMAGE_REJECT_REASONS = (
    "unsafe_path",  # `..` or an absolute path outside the image root
    "missing",  # file does not exist
    "empty_file",  # zero bytes
    "not_an_image",  # bytes that no accepted decoder recognises (HTML error page, text, ...)
    "truncated",  # a valid header but the pixel data ends early
    "undecodable",  # recognised format but the decoder fails
    "too_small",  # shorter side below `min_image_side` (e.g. 1x1 placeholders)
    "too_large",  # header claims more pixels than Pillow's decompression-bomb limit (damaged/hostile)
    "unreadable",  # the OS refuses to read it: permission denied, symlink loop, name too long, I/O error
)
ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF")
RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}
_JPEG_MAGIC = b"\xff\xd8\xff"
# The exception types Pillow's JPEG/PNG/TIFF plugins raise on damaged or hostile bytes. Anything else
# (a TypeError, an AttributeError) is a bug of ours and keeps its traceback; MemoryError propagates too, so
# an image's verdict never depends on how much memory happens to be free.
_DECODER_FAILURES = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)


class ImageReject(Exception):
    """An image that cannot go into a shard, with a reason from `IMAGE_REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in IMAGE_REJECT_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    """What happened to one image on its way into a shard (kept for counts in the shard index)."""

    format: str
    source_mode: str
    source_size: tuple[int, int]
    drafted_size: tuple[int, int]


def resolve_image_path(root: str | os.PathLike, path: str) -> Path:
    """Join a CSV image path onto `root`, refusing anything that would leave it (an `unsafe_path` reject)."""
    if not path:
        raise ImageReject("unsafe_path", "empty path")
    try:
        return resolve_under(root, path)  # refuses a NUL byte too
    except UnsafePathError as exc:
        raise ImageReject("unsafe_path", str(exc)) from None
    except (RuntimeError, OSError, ValueError) as exc:  # 3.11's Path.resolve: a symlink loop is RuntimeError
        raise ImageReject("unreadable", f"{path}: {exc}") from None


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes; every way the OS can refuse them is a reject of this one image."""
    try:
        # O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; only a regular file is read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageReject("missing", str(path)) from None
    except IsADirectoryError:
        raise ImageReject("not_an_image", f"{path} is a directory") from None
    except (OSError, ValueError) as exc:  # EACCES, ELOOP, ENAMETOOLONG, EIO, ...
        raise ImageReject("unreadable", f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageReject("not_an_image", f"{path} is a directory")
        if not stat.S_ISREG(mode):
            raise ImageReject("unreadable", f"{path}: not a regular file (a FIFO, socket or device)")
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read()
    except OSError as exc:
        raise ImageReject("unreadable", f"{path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if not data:
        raise ImageReject("empty_file", str(path))
    return data


def shorter_side_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(w, h) scaled so that min(w, h) == `shorter`, aspect ratio kept (rounded half up)."""
    w, h = size
    if w <= h:
        return shorter, max(1, int(h * shorter / w + 0.5))
    return max(1, int(w * shorter / h + 0.5)), shorter


def to_gray8(image: Image.Image) -> Image.Image:
    """One 8-bit channel; 16-bit grayscale is stretched over its own range (as MIMIC's DICOM→JPEG was)."""
    if image.mode == "L":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    return image.convert("L")


def load_resized(
    data: bytes, shorter: int, min_side: int = 32, resample: str = "lanczos"
) -> tuple[Image.Image, ImageInfo]:
    """Decode `data` (at reduced DCT scale when JPEG), make it 8-bit gray, resize its shorter side.

    Any failure of the decoder on these bytes is an `ImageReject` (a hostile file must not end the run);
    a header claiming more pixels than Pillow's decompression-bomb threshold is `too_large` before any
    pixel is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _load_resized(data, shorter, min_side, resample)
        except ImageReject:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageReject("too_large", str(exc)) from None
        except _DECODER_FAILURES as exc:  # how Pillow's decoders fail on bad bytes: this image's problem
            raise ImageReject("undecodable", f"{type(exc).__name__}: {exc}") from None


def _load_resized(data: bytes, shorter: int, min_side: int, resample: str) -> tuple[Image.Image, ImageInfo]:
    if data.startswith(_JPEG_MAGIC):
        formats: tuple[str, ...] = ("JPEG",)
    else:
        formats = ACCEPTED_FORMATS
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        raise ImageReject("not_an_image", f"{data[:8]!r}… is not {'/'.join(ACCEPTED_FORMATS)}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReject("undecodable", str(exc)) from None
    source_size, source_mode, fmt = image.size, image.mode, image.format or "?"
    if min(source_size) < min_side:
        raise ImageReject("too_small", f"{source_size[0]}x{source_size[1]} < {min_side} px")
    if fmt == "JPEG" and image.mode in ("L", "RGB", "YCbCr", "CMYK"):
        image.draft("L", (shorter, shorter))
    try:
        image.load()
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc) or "broken data stream" in str(exc) else "undecodable"
        raise ImageReject(reason, str(exc)) from None
    except (ValueError, SyntaxError) as exc:
        raise ImageReject("undecodable", str(exc)) from None
    drafted_size = image.size
    gray = to_gray8(image)
    target = shorter_side_size(gray.size, shorter)
    if gray.size != target:
        gray = gray.resize(target, RESAMPLING[resample])
    return gray, ImageInfo(fmt, source_mode, source_size, drafted_size)


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """Baseline JPEG with no metadata: the same pixels always give the same bytes."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def decode_gray(data: bytes) -> Image.Image:
    """Decode a shard JPEG (already small and one-channel)."""
    image = Image.open(io.BytesIO(data), formats=("JPEG",))
    image.load()
    return to_gray8(image)
