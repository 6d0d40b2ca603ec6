from __future__ import annotations

import os

import pandas as pd
import pytest

from pipeline.io import atomic_dir, atomic_open, write_csv, write_json, write_text
from pipeline.paths import UnsafePathError, resolve_under


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "out.csv", "w") as fh:
        fh.write("half a row,")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_existing_output_survives_a_failed_rewrite(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        write_json(target, {"a": object()})
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["summary.json"]


def test_writers_are_deterministic(tmp_path):
    frame = pd.DataFrame({"study_id": [50000001, 50000002], "Edema": [1.0, float("nan")], "t": ["a,b", None]})
    write_csv(tmp_path / "a.csv.gz", frame, compression="gzip")
    write_csv(tmp_path / "b.csv.gz", frame, compression="gzip")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    write_csv(tmp_path / "c.csv", frame)
    assert (tmp_path / "c.csv").read_text() == 'study_id,Edema,t\n50000001,1.0,"a,b"\n50000002,,\n'
    write_json(tmp_path / "d.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "d.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "tree"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "x").write_text("2")
        raise RuntimeError
    assert (target / "x").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["tree"]
    write_text(target / "y", "ok")
    assert (target / "y").read_text() == "ok"


@pytest.mark.parametrize(
    "path",
    ["../outside.jpg", "files/../../outside.jpg", "/etc/passwd", "files/p10/../../../x.jpg"],
)
def test_paths_cannot_escape_their_root(tmp_path, path):
    (tmp_path / "root").mkdir()
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_under(tmp_path / "root", path)


def test_paths_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "files").mkdir(parents=True)
    assert resolve_under(root, "files/p10/a.jpg") == (root / "files/p10/a.jpg").resolve()
    assert resolve_under(root, str(root / "files/x.jpg")) == (root / "files/x.jpg").resolve()
    (root / "files" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        resolve_under(root, "files/link/secret.jpg")


def test_a_rewrite_removes_only_its_own_stale_temps(tmp_path):
    """A killed write leaves `.name.XXXXXXXX.tmp` behind; the next write of that target removes it, and
    never a live temp of another target whose name merely starts the same."""
    (tmp_path / ".clip.json.k2j4x9a1.tmp").write_text("{half")  # killed write of clip.json
    (tmp_path / ".clip.ab12cd34.tmp").mkdir()  # killed write of the folder clip/
    (tmp_path / ".clip.json.old.tmp").write_text("not ours: wrong shape")
    write_json(tmp_path / "clip.json", {"ok": 1})
    assert sorted(os.listdir(tmp_path)) == [".clip.ab12cd34.tmp", ".clip.json.old.tmp", "clip.json"]
    with atomic_dir(tmp_path / "clip") as tmp:
        (tmp / "a.csv").write_text("x\n")
    assert sorted(os.listdir(tmp_path)) == [".clip.json.old.tmp", "clip", "clip.json"]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (30, "read-only file system"),  # EROFS
        (13, "permission denied"),  # EACCES
        (27, "file too large"),  # EFBIG
        (36, "file name too long"),  # ENAMETOOLONG
        (122, "no space left on device"),  # EDQUOT
    ],
)
def test_output_side_os_errors_become_one_line_naming_the_output(tmp_path, monkeypatch, code, words):
    """At the one door every output goes through: the temp file cannot be made, or a write fails (errors
    from `write()` name no file: the line names the output)."""
    import tempfile

    from pipeline.errors import OutputError, user_message

    target = tmp_path / "out" / "table.csv"

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(target.parent))

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(OutputError) as info:
            write_text(target, "x")
    line = user_message(info.value)
    assert words in line and str(target.parent) in line and "\n" not in line
    with pytest.raises(OutputError) as info, atomic_open(target, "w") as fh:
        fh.write("half")
        raise OSError(code, os.strerror(code))
    line = user_message(info.value)
    assert words in line and str(target) in line
    assert os.listdir(target.parent) == []  # nothing half-written kept


def test_bare_environment_os_errors_get_one_line_and_bugs_keep_their_traceback():
    from pipeline.errors import user_message

    assert user_message(OSError(30, "Read-only file system", "/data/x")) == (
        "/data/x: read-only file system; write the outputs to a writable folder (or remount it read-write)"
    )
    assert "ulimit -f" in user_message(OSError(27, "File too large", "/data/x"))
    # a bare ELOOP/EISDIR/ENOTDIR/EIO is as often a path our code built wrongly: keep its traceback
    assert user_message(OSError(40, "Too many levels of symbolic links", "/a/b")) is None
    assert user_message(IsADirectoryError(21, "Is a directory", "/a")) is None
    assert user_message(FileNotFoundError(2, "No such file", "/x")) is None  # our bug: keep the traceback
    assert user_message(KeyError("k")) is None


def _raise_output_error(path: str) -> None:
    from pipeline.errors import OutputError

    raise OutputError.from_os_error(OSError(30, "Read-only file system"), path)


def test_output_errors_pickle_and_cross_a_process_pool(tmp_path):
    """Raised in a pool worker, the error reaches the driver as itself, not as BrokenProcessPool."""
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.errors import OutputError, user_message

    error = OutputError.from_os_error(OSError(28, "No space left on device"), "/data/out.csv")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.errno, copy.filename) == (str(error), 28, "/data/out.csv")
    with ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(OutputError) as info:
        pool.submit(_raise_output_error, str(tmp_path / "x.csv")).result()
    assert user_message(info.value) == (
        f"cannot write {tmp_path / 'x.csv'}: read-only file system; write the outputs to a writable folder "
        "(or remount it read-write)"
    )


def test_an_input_error_inside_a_write_is_not_called_an_output_error(tmp_path):
    """Reading some other file inside an atomic write may fail: that is not "cannot write <output>"."""
    from pipeline.errors import OutputError

    target = tmp_path / "out" / "table.csv"
    with pytest.raises(PermissionError) as info, atomic_open(target, "w"):
        raise PermissionError(13, "Permission denied", "/elsewhere/input.csv")
    assert not isinstance(info.value, OutputError)
    with pytest.raises(OutputError), atomic_open(target, "w"):
        raise PermissionError(13, "Permission denied", str(target.parent / ".table.csv.x.tmp"))


def test_locks_live_in_a_private_folder_of_this_user(tmp_path):
    import stat
    import tempfile

    from pipeline.io import LOCK_DIR_NAME

    write_text(tmp_path / "x.txt", "x")
    folder = os.path.join(tempfile.gettempdir(), f"{LOCK_DIR_NAME}-{os.getuid()}")
    info = os.stat(folder)
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
