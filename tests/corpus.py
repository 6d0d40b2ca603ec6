"""The bad-input corpus: every way a user's MIMIC copy, our own intermediate files or the params can be
wrong, made by code from a small synthetic release, each with the exact behaviour it must produce.

A case corrupts a copy of a known-good workspace and names what must happen:

- `Fails`: the stage exits 2 with one ``error:`` line that matches every pattern (the file, row or study,
  and what to do), writes none of its outputs and leaves no temporary files.
- `Rejected`: the run succeeds and exactly the touched studies (or images) are rejected with the reason.
- `Kept`: the run succeeds and the input is used; outputs equal the good run's except for touched studies.

Every non-failing case must also keep the accounting: each input study is in an output or a rejects file,
once, and every untouched study's output is byte-for-byte what the good run wrote.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import runpy
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from pipeline.mimic import schema

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Fails:
    stage: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class Kept:
    counts: dict[str, int] = field(default_factory=dict)  # summary counters that must read so
    changed: bool = False  # the touched studies' rows may differ from the good run's
    message: str = ""  # a warning the stage must print
    row: Callable[[dict], bool] | None = None  # holds for each touched study's output row


Expectation = Fails | Rejected | Kept


@dataclass(frozen=True)
class Case:
    name: str
    corrupt: Callable[..., list[int]]  # (workspace) -> the study ids it touched
    expect: Expectation

    def __str__(self) -> str:
        return self.name


@dataclass
class StageRun:
    code: int
    err: str

    def error_line(self) -> str:
        """The one line that explains the failure (ours: ``error: ...``; argparse: ``prog: error: ...``)."""
        lines = [line for line in self.err.splitlines() if "error: " in line]
        return lines[-1] if lines else ""


def run_entry_point(argv: list[str], cwd: Path, *, module: str | None = None) -> StageRun:
    """Run a stage script (or a ``python -m`` module) in this process, as DVC's command line would.

    User errors end in ``SystemExit(2)`` from `run_cli`; anything else (a traceback) propagates and
    fails the test, which is the point."""
    err = io.StringIO()
    old_argv = sys.argv
    code = 0
    with contextlib.chdir(cwd), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if module:
                sys.argv = [module, *argv]
                with warnings.catch_warnings():  # re-running an imported module as __main__ is the intent
                    warnings.filterwarnings("ignore", "'pipeline.", RuntimeWarning)
                    runpy.run_module(module, run_name="__main__", alter_sys=False)
            else:
                sys.argv = argv
                runpy.run_path(str(ROOT / argv[0]), run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = old_argv
    return StageRun(code, err.getvalue())


def temp_files(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.name.endswith((".tmp", ".old"))]


# -- the release --------------------------------------------------------------------------------------


class Release:
    """A MIMIC-CXR-JPG copy under `base`, with the edits the cases make."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "mimic-cxr-jpg" / "2.1.0"
        self.reports = base / "mimic-cxr-reports"

    def frame(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.root / name, dtype=str, keep_default_na=False)

    def write(self, name: str, frame: pd.DataFrame, *, crlf: bool = False, bom: bool = False) -> None:
        text = frame.to_csv(index=False, lineterminator="\r\n" if crlf else "\n")
        data = ("\ufeff" if bom else "").encode() + text.encode("utf-8")
        path = self.root / name
        path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)

    def edit(self, name: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        self.write(name, fn(self.frame(name)))

    def report(self, study_id: int) -> Path:
        subject = int(self.frame(schema.SPLIT_FILE).query(f"study_id == '{study_id}'")["subject_id"].iloc[0])
        return self.reports / schema.report_relpath(subject, study_id)

    def image(self, relpath: str) -> Path:
        return self.root / relpath


@dataclass
class Workspace:
    """A copy of a good project: the release, the params and (for later stages) the good outputs."""

    path: Path
    release: Release
    good: dict  # what the good run wrote: {"studies": {split: DataFrame}, "rejects": DataFrame, ...}

    @property
    def params(self) -> Path:
        return self.path / "params.yaml"

    def edit_params(self, fn: Callable[[dict], None]) -> None:
        params = yaml.safe_load(self.params.read_text())
        fn(params)
        self.params.write_text(yaml.safe_dump(params, sort_keys=False))

    def kept(self, split: str = "train", k: int = 0, min_images: int = 1) -> dict:
        """The k-th study of the good run's `split` CSV with at least `min_images` images."""
        frame = self.good["studies"][split]
        rows = frame.loc[frame["n_images"].astype(int) >= min_images]
        return rows.iloc[k].to_dict()


def copy_workspace(good: Workspace, where: Path) -> Workspace:
    shutil.copytree(good.path, where, symlinks=True)
    return Workspace(where, Release(where / good.release.base.relative_to(good.path)), good.good)


# -- corruptions: params ------------------------------------------------------------------------------


def params_edit(fn: Callable[[dict], None]):
    def corrupt(ws: Workspace) -> list[int]:
        ws.edit_params(fn)
        return []

    return corrupt


def both(*corruptions: Callable[[Workspace], list[int]]):
    def corrupt(ws: Workspace) -> list[int]:
        return [sid for c in corruptions for sid in c(ws)]

    return corrupt
