"""The reports tree: find every `s<study>.txt`, read and section it in parallel, as one table.

One bad file or folder never ends the scan: a report the OS will not read (permission denied, a symlink
loop, an I/O error) gets status `unreadable`, a report that is a link leaving the reports tree gets
`outside_root` (it is never read), and a folder that cannot be listed is skipped and reported in
`ScanProblems`, so its studies are counted as `no_report` downstream. Only a tree that is not there at
all is an error.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.mimic.sections import ReportSections, decode_report, extract_sections
from pipeline.parallel import effective_workers, parallel_map

_SUBJECT_DIR = re.compile(r"p(\d{8})")
_REPORT_FILE = re.compile(r"s(\d{8})\.txt")
_GROUP_DIR = re.compile(r"p1\d")
SECTION_FIELDS = [f.name for f in fields(ReportSections)]
COLUMNS = ["study_id", "subject_id", "status", "decode_errors", "n_bytes", *SECTION_FIELDS]
MAX_REPORT_BYTES = 1 << 20


class ReportsTreeError(PipelineError, FileNotFoundError):
    pass


@dataclass
class ScanProblems:
    """Folders of the reports tree that could not be listed (their studies end as `no_report`)."""

    folders: list[str]

    def __bool__(self) -> bool:
        return bool(self.folders)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop or an unreadable link target: not a folder we can use
        return False


def _listing(folder: Path, problems: ScanProblems | None) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        if problems is not None:
            problems.folders.append(f"{folder} ({exc.strerror or exc})")
        return []


def iter_report_files(
    reports_root: str | os.PathLike, problems: ScanProblems | None = None
) -> Iterator[tuple[int, int, str]]:
    """Yield (subject_id, study_id, path) for every report, in sorted order.

    Accepts the root (containing `files/`) or the `files/` folder itself. Image folders next to the
    reports (when both trees are unpacked together) are skipped without being listed. A folder that cannot
    be listed is recorded in `problems` and skipped; a report entry is yielded even when it cannot be
    stat'ed (a loop, no permission), so that reading it records why.
    """
    root = Path(reports_root)
    files = root / "files" if (root / "files").is_dir() else root
    groups = []
    if files.is_dir():
        try:
            with os.scandir(files) as it:
                groups = sorted(e.name for e in it if _is_dir(e) and _GROUP_DIR.fullmatch(e.name))
        except OSError as exc:
            raise ReportsTreeError(f"{files}: cannot list the reports tree ({exc.strerror or exc})") from None
    if not groups:
        raise ReportsTreeError(
            f"{root}: no reports tree here; expected {root}/files/p1X/p<subject_id>/s<study_id>.txt "
            "(unzip mimic-cxr-reports.zip and point data.reports_root at the folder holding files/)"
        )
    for group in groups:
        for subject in (e.name for e in _listing(files / group, problems) if _is_dir(e)):
            m = _SUBJECT_DIR.fullmatch(subject)
            if not m:
                continue
            for entry in _listing(files / group / subject, problems):
                r = _REPORT_FILE.fullmatch(entry.name)
                if r and not _is_dir(entry):
                    yield int(m.group(1)), int(r.group(1)), entry.path


def _outside(path: str, root: str | None) -> bool:
    """Whether `path` (a link, or under a linked folder) resolves outside the reports tree `root`."""
    if root is None:
        return False
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False  # reading it will say why
    return os.path.commonpath([real, root]) != root


def section_report_file(path: str, root: str | None = None) -> tuple:
    """Read one report and return (status, decode_errors, n_bytes, *sections). With `root` (the real path
    of the reports tree) a report that resolves outside it is not read (status `outside_root`)."""
    if _outside(path, root):
        return ("outside_root", 0, 0, *_empty_sections())
    try:
        data = _read_regular(path, MAX_REPORT_BYTES + 1)
    except (OSError, ValueError):  # EACCES, ELOOP, EIO, a FIFO/socket/device, ...
        return ("unreadable", 0, 0, *_empty_sections())
    status, n_bytes = None, len(data)
    if n_bytes > MAX_REPORT_BYTES:
        data, status = data[:MAX_REPORT_BYTES], "truncated"
    text, decoded, errors = decode_report(data)
    if decoded in ("binary", "empty"):
        return (decoded, errors, n_bytes, *_empty_sections())
    return (status or decoded, errors, n_bytes, *astuple(extract_sections(text)))


def _read_regular(path: str, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file. Opened without blocking and checked with fstat, so a FIFO in
    the tree (which `open` would wait on forever for a writer), a socket or a device is refused, not read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as fh:
            return fh.read(limit)
    finally:
        os.close(fd)


def _empty_sections() -> tuple:
    return (*([None] * (len(SECTION_FIELDS) - 1)), 0)


def _section_chunk(paths: list[str], root: str | None = None) -> list[tuple]:
    return [section_report_file(p, root) for p in paths]


def section_reports(reports_root: str | os.PathLike, workers: int = 0, progress: bool = True) -> pd.DataFrame:
    """Section every report under `reports_root` → one row per study (columns `COLUMNS`). Folders that
    could not be listed are named on stderr (their studies become `no_report` rejects downstream)."""
    if workers < 0:
        raise PipelineError(f"workers must be 0 (all cores) or a positive number of processes, got {workers}")
    problems = ScanProblems([])
    found = list(iter_report_files(reports_root, problems))
    if problems:
        shown = "; ".join(problems.folders[:5]) + (" …" if len(problems.folders) > 5 else "")
        print(
            f"warning: skipped {len(problems.folders)} unreadable report folder(s): {shown}", file=sys.stderr
        )
    root = Path(reports_root)
    real_root = os.path.realpath(root / "files" if (root / "files").is_dir() else root)
    paths = [p for _, _, p in found]
    workers = effective_workers(workers)
    chunk = max(1, min(2000, -(-len(paths) // (workers * 4))))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    chunk_fn = functools.partial(_section_chunk, root=real_root)
    if workers == 1 and not progress:
        results = [chunk_fn(c) for c in chunks]
    else:  # draws its own bar (off when stderr is not a terminal)
        results = parallel_map(chunk_fn, chunks, workers, "sections", unit="chunk")
    rows: list[tuple] = [row for result in results for row in result]
    frame = pd.DataFrame(rows, columns=COLUMNS[2:])
    frame.insert(0, "subject_id", pd.array([s for s, _, _ in found], dtype="int64"))
    frame.insert(0, "study_id", pd.array([s for _, s, _ in found], dtype="int64"))
    frame = frame.astype({"decode_errors": "int64", "n_bytes": "int64", "n_sections": "int64"})
    return frame.sort_values("study_id", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class SectionsParams:
    workers: int = 0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = all cores), got {self.workers}")
