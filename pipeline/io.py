"""Atomic, deterministic, locked writers.

Every stage output goes through these so that an interrupted stage never leaves a half-written file that
DVC would accept: data is written to a temporary sibling and renamed into place only when complete. They
are also the one door where output-side OS errors (full disk, read-only folder, permissions, file-size
limit, name too long) become one line naming the output (`pipeline.errors.OutputError`).

Concurrency: each write holds a `filelock` lock on its target while its temporary exists, so the stale-temp
cleanup (which runs under that lock) can only ever see temporaries of dead writers; a stage holds
`output_lock` on its outputs for its whole run, so a second run into the same place is refused at once.
The lock files live in a folder of the system's temp dir keyed by the target's absolute path, never
among the outputs (DVC hashes those folders).
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

import filelock
import pandas as pd
import pyarrow.lib

from pipeline.errors import ENVIRONMENT_ERRNOS, OutputError, PipelineError

LOCK_DIR_NAME = "medprobclip-locks"


class ConcurrentRunError(PipelineError):
    """Another live process is writing the same output."""


def _is_output_side(filename: Any, path: Path) -> bool:
    """Whether an OS error's file is the output `path`, one of its folders, or inside its folder (the
    temporary sibling): only those are this write's failure; any other file is some other problem."""
    if filename is None:
        return True  # `write()`/`fsync()` errors name no file
    try:
        name, target = Path(os.path.abspath(os.fsdecode(filename))), Path(os.path.abspath(path))
    except (TypeError, ValueError):
        return False
    return name == target or name in target.parents or target.parent in name.parents


@contextlib.contextmanager
def _output_errors(path: Path) -> Iterator[None]:
    """An OS error of the machine or file system while writing `path` becomes one line naming it
    (`write()` errors name no file; a bare EROFS/EFBIG/EACCES is a traceback otherwise). An error about
    some other file (an input read inside the block) passes through untouched."""
    try:
        yield
    except OSError as exc:
        if exc.errno in ENVIRONMENT_ERRNOS and _is_output_side(exc.filename, path):
            raise OutputError.from_os_error(exc, path) from exc
        raise


def _lock_file(path: Path, kind: str) -> Path:
    """Where the lock of `path` lives: outside every output folder, keyed by the absolute path, in a
    folder of this user's own (a shared sticky folder would be cut down by the umask and refuse others)."""
    key = hashlib.sha256(f"{kind}:{os.path.abspath(path)}".encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / f"{LOCK_DIR_NAME}-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{key}.lock"


@contextlib.contextmanager
def _locked(path: Path, kind: str, what: str) -> Iterator[None]:
    lock = filelock.FileLock(_lock_file(path, kind), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ConcurrentRunError(
            f"{path}: another run is {what} it right now (lock {lock.lock_file}); wait for it to finish or "
            "stop it, then rerun — two writers would delete each other's temporary files"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def output_lock(*paths: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of a stage's outputs for its whole run; a second run into them is refused at once."""
    with contextlib.ExitStack() as stack:
        for path in sorted({os.path.abspath(p) for p in paths}):
            stack.enter_context(_locked(Path(path), "stage", "writing"))
        yield


def remove_stale_temps(path: Path, suffix: str = "") -> None:
    """Drop the temporary siblings a killed earlier write of `path` left behind: they would otherwise pile
    up next to the outputs, inside folders that later stages hash as dependencies. Only names of exactly
    the shape `atomic_path`/`atomic_dir` give this target match (so `x.json`'s temp is not `x`'s). Called
    with the target's write lock held, so no live writer of `path` has a temporary here."""
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
    with _locked(path, "write", "writing"), _output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path, suffix)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
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
    with _locked(path, "write", "writing"), _output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
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


def decode_utf8(path: str | os.PathLike, data: bytes, error: type[Exception], problem: str) -> str:
    """`data` as UTF-8 text, or `error("<path>: line N: <problem>")` naming the line of the first bad
    byte; `{byte}` in `problem` becomes that byte (0x..). Every text input a user can edit is read so."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: line {line}: {problem.replace('{byte}', f'{data[exc.start]:#04x}')}") from None


def read_parquet_input(path: str | os.PathLike, stage: str) -> pd.DataFrame:
    """An intermediate table another stage wrote; missing or damaged means: rerun that stage."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run the `{stage}` stage first (dvc repro {stage})")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.lib.ArrowException) as exc:  # a damaged file: several types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PipelineError(
            f"{path}: unreadable ({reason}); rerun the `{stage}` stage (dvc repro -f {stage}) or restore "
            "it (dvc checkout)"
        ) from None


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


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object:
            # Mixed cells are written as `str(cell)`; strings are checked without a copy.
            if values.map(lambda v: "\r" in (v if isinstance(v, str) else str(v))).any():
                return True
        elif (
            pd.api.types.is_string_dtype(values.dtype)
            and values.str.contains("\r", regex=False, na=False).any()
        ):
            return True
    return False


def write_csv(path: str | os.PathLike, frame: pd.DataFrame, compression: str | None = None) -> None:
    """CSV with LF line endings; gzip output carries no timestamp or file name so bytes are stable.

    Python's csv writer quotes a cell holding `\n` but not one holding a bare `\r` (not part of the LF
    line terminator), and every CSV reader then splits the row there; such a table is written with every
    text cell quoted instead (other tables keep their bytes)."""
    import csv

    quoting = csv.QUOTE_NONNUMERIC if _has_carriage_return(frame) else csv.QUOTE_MINIMAL
    if compression == "gzip":
        import gzip

        data = frame.to_csv(index=False, lineterminator="\n", quoting=quoting).encode("utf-8")
        with atomic_open(path, "wb") as fh:
            fh.write(gzip.compress(data, compresslevel=6, mtime=0))
        return
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n", quoting=quoting)


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
