"""Atomic, deterministic writers.

Every stage output goes through these so that an interrupted stage never leaves a half-written file that
DVC would accept: data is written to a temporary sibling and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from pipeline.errors import DISK_FULL


@contextlib.contextmanager
def _naming_full_disk(path: Path) -> Iterator[None]:
    """A write that hits a full disk says which output it was writing (`write()` errors name no file)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL and not exc.filename:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def remove_stale_temps(path: Path, suffix: str = "") -> None:
    """Drop the temporary siblings a killed earlier write of `path` left behind: they would otherwise pile
    up next to the outputs, inside folders that later stages hash as dependencies. Only names of exactly
    the shape `atomic_path`/`atomic_dir` give this target match (so `x.json`'s temp is not `x`'s)."""
    stale = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}" + re.escape(suffix) + r"\.tmp")
    for entry in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not stale.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _naming_full_disk(path):
            yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing that replaces `path` atomically on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with _naming_full_disk(path):
            yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def finite(tree: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python ones, so a JSON is valid for every reader (DVC, jq)."""
    import math

    import numpy as np

    if isinstance(tree, dict):
        return {k: finite(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [finite(v) for v in tree]
    if isinstance(tree, float | np.floating):
        return float(tree) if math.isfinite(tree) else None
    if isinstance(tree, np.integer):
        return int(tree)
    return tree


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Sorted keys and a trailing newline: byte-identical for equal content."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_csv(path: str | os.PathLike, frame: pd.DataFrame, compression: str | None = None) -> None:
    """CSV with LF line endings; gzip output carries no timestamp or file name so bytes are stable."""
    if compression == "gzip":
        import gzip

        data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
        with atomic_open(path, "wb") as fh:
            fh.write(gzip.compress(data, compresslevel=6, mtime=0))
        return
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n")


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd")


def files_digest(paths: list[Path]) -> str:
    """sha256 over the names and bytes of `paths`, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """A folder's files (top level), sorted."""
    return sorted(p for p in Path(folder).glob("*") if p.is_file())


def folder_digest(folder: str | os.PathLike) -> str:
    """sha256 of a folder's files: what identifies a saved tokenizer."""
    return files_digest(folder_files(folder))
