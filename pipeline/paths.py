"""Resolving paths read from CSVs so they cannot escape the root they are meant to live under."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import PipelineError


class UnsafePathError(PipelineError, ValueError):
    """A path from a data file that points outside its root (``..``, or absolute elsewhere)."""


def resolve_under(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Return `root/path` resolved, or raise if it would leave `root`.

    Absolute paths are accepted only when they already lie under `root`; symlinks are resolved first, so
    a link inside the tree pointing elsewhere is refused too.
    """
    if "\x00" in str(path):
        raise UnsafePathError(f"{path!r}: contains a NUL byte")
    base = Path(root).resolve()
    candidate = Path(path)
    full = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if full != base and base not in full.parents:
        raise UnsafePathError(f"{path!s}: resolves to {full}, outside {base}")
    return full
