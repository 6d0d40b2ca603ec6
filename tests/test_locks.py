"""One writer per output (issue 17, class 7): a second run into the same outputs is refused at once, and
the stale-temp cleanup never deletes a live writer's temporary file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from corpus import run_entry_point, temp_files

from pipeline.io import ConcurrentRunError, atomic_path, output_lock, write_text

ROOT = Path(__file__).resolve().parents[1]


def hold(code: str, ready: Path) -> subprocess.Popen:
    """Run `code` in another process (a live writer) and wait until it signals that it holds its lock."""
    script = textwrap.dedent(code)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, "the holder exited early"
        assert time.monotonic() < deadline, "the holder never took its lock"
        time.sleep(0.05)
    return proc


def release(proc: subprocess.Popen, go: Path) -> None:
    go.touch()
    assert proc.wait(timeout=60) == 0


def test_a_live_writers_temporary_survives_a_second_writer(tmp_path):
    target, ready, go = tmp_path / "out" / "table.csv", tmp_path / "ready", tmp_path / "go"
    proc = hold(
        f"""
        import time
        from pathlib import Path
        from pipeline.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("first writer")
            Path({str(ready)!r}).touch()
            while not Path({str(go)!r}).exists():
                time.sleep(0.02)
        """,
        ready,
    )
    try:
        live = temp_files(target.parent)
        assert len(live) == 1
        with pytest.raises(ConcurrentRunError, match=r"table.csv: another run is writing it right now"):
            write_text(target, "second writer")
        assert temp_files(target.parent) == live, "the live writer's temporary was deleted"
        assert live[0].read_text() == "first writer"
    finally:
        release(proc, go)
    assert target.read_text() == "first writer" and not temp_files(target.parent)


def test_a_dead_writers_temporary_is_cleaned_under_the_lock(tmp_path):
    target = tmp_path / "table.csv"
    stale = tmp_path / ".table.csv.abcd1234.tmp"  # what a killed writer leaves
    stale.write_text("half")
    with atomic_path(target) as tmp:
        assert not stale.exists()
        tmp.write_text("whole")
    assert target.read_text() == "whole" and not temp_files(tmp_path)


def test_output_lock_refuses_a_second_holder_in_another_process(tmp_path):
    out, ready, go = tmp_path / "studies", tmp_path / "ready", tmp_path / "go"
    proc = hold(
        f"""
        import time
        from pathlib import Path
        from pipeline.io import output_lock
        with output_lock({str(out)!r}):
            Path({str(ready)!r}).touch()
            while not Path({str(go)!r}).exists():
                time.sleep(0.02)
        """,
        ready,
    )
    try:
        with pytest.raises(ConcurrentRunError, match="another run is writing"), output_lock(out):
            pass
    finally:
        release(proc, go)
    with output_lock(out):  # free again once the first run ended
        pass


def test_a_second_shards_run_into_the_same_folder_is_refused(tmp_path):
    """The stage as DVC runs it: while another run holds `shards/`, a second one exits 2 with one line and
    touches nothing (the first run's files, here a temporary, survive)."""
    from test_shards import make_study_fixture  # a tiny study CSV + image tree

    root, studies, _ = make_study_fixture(tmp_path, {"train": 3})
    params = {"shards": {"image_size": 32, "samples_per_shard": 2, "workers": 1, "splits": ["train"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out, ready, go = tmp_path / "shards", tmp_path / "ready", tmp_path / "go"
    live = out / "train" / ".shard-000000.tar.live0000.tar.tmp"
    proc = hold(
        f"""
        import time
        from pathlib import Path
        from pipeline.io import output_lock
        with output_lock({str(out)!r}):
            live = Path({str(live)!r})
            live.parent.mkdir(parents=True)
            live.write_bytes(b"a live run's shard")
            Path({str(ready)!r}).touch()
            while not Path({str(go)!r}).exists():
                time.sleep(0.02)
        """,
        ready,
    )
    argv = ["stages/shards.py", "--studies", str(studies), "--mimic-root", str(root), "--out", str(out)]
    try:
        run = run_entry_point(argv, tmp_path)
        line = run.error_line()
        assert run.code == 2 and "Traceback" not in run.err, run.err[-2000:]
        assert f"{out}: another run is writing it right now" in line and "wait for it" in line, line
        assert live.read_bytes() == b"a live run's shard"
        assert not (out / "summary.json").exists()
    finally:
        release(proc, go)
    assert run_entry_point(argv, tmp_path).code == 0  # the same command works once the other run ended
