"""Fault injection: SIGKILL in the middle of the shards, training and evaluation stages, and a full disk
while shards are written. After each, the rerun must give exactly what an uninterrupted run gives, leave no
temporary files, and nothing half-written may ever look like a finished output."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from corpus import run_entry_point, temp_files
from test_shards import make_study_fixture
from test_train import build_tiny_project

ROOT = Path(__file__).resolve().parents[1]
SHARDS_PARAMS = {"image_size": 32, "samples_per_shard": 1, "workers": 1, "max_reject_fraction": 1.0}
pytestmark = pytest.mark.slow


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[Path]:
    """Temp files, resume markers and stale dirs: what a clean finish must not leave behind."""
    return [*temp_files(folder), *folder.rglob(".*.done.json")]


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def kill_when(
    proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240.0, group: bool = False
) -> None:
    """SIGKILL `proc` (its whole session with `group`) the moment `ready()` holds; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"finished (exit {proc.returncode}) before the kill point:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("kill point not reached in time")
        time.sleep(0.005)
    (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def run_ok(argv: list[str], cwd: Path) -> str:
    proc = start(argv, cwd)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


# -- shards -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    make_study_fixture(root, {"train": 30, "validate": 4, "test": 4})
    (root / "params.yaml").write_text(yaml.safe_dump({"shards": SHARDS_PARAMS}))
    run_ok(stage_path(shards_argv(root, "reference")), root)
    return root


def shards_argv(root: Path, out: str) -> list[str]:
    return ["stages/shards.py", "--studies", "studies", "--mimic-root", "mimic", "--out", out, "--params",
            str(root / "params.yaml")]  # fmt: skip


def stage_path(argv: list[str]) -> list[str]:
    return [str(ROOT / argv[0]), *argv[1:]]


def test_kill_during_shards_then_rerun_gives_identical_shards(shard_inputs: Path):
    root, out = shard_inputs, shard_inputs / "killed"
    proc = start(stage_path(shards_argv(root, "killed")), root)
    kill_when(proc, lambda: (out / "train" / ".shard-000003.tar.done.json").exists())
    assert not (out / "train" / "index.json").exists(), "a killed split must not look finished"
    assert not (out / "summary.json").exists()
    run_ok(stage_path(shards_argv(root, "killed")), root)
    assert tree_digest(out) == tree_digest(root / "reference")
    assert not leftovers(out)


def disk_full_after(n_writes: int):
    """A tarfile whose `n_writes`-th member write fails the way a full disk does."""
    calls = {"n": 0}
    real = tarfile.TarFile.addfile

    def addfile(self, tarinfo, fileobj=None):
        calls["n"] += 1
        if calls["n"] >= n_writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        return real(self, tarinfo, fileobj)

    return addfile


def assert_disk_full_reported(run, out: Path) -> None:
    line = run.error_line()
    assert run.code == 2 and "Traceback" not in run.err, run.err[-2000:]
    assert line.startswith("error: no space left on device writing ") and "free space" in line, line
    assert not list(out.rglob("index.json")) and not (out / "summary.json").exists()
    assert not temp_files(out), "a temporary file survived the failure"


def test_simulated_full_disk_while_writing_shards(shard_inputs: Path, monkeypatch):
    root, out = shard_inputs, shard_inputs / "full"
    monkeypatch.setattr(tarfile.TarFile, "addfile", disk_full_after(40))
    run = run_entry_point(shards_argv(root, "full"), root)
    assert_disk_full_reported(run, out)
    monkeypatch.undo()  # space freed
    assert run_entry_point(shards_argv(root, "full"), root).code == 0
    assert tree_digest(out) == tree_digest(root / "reference")
    assert not leftovers(out)


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size_kib: int):
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.skipif(
    os.geteuid() != 0 or sys.platform != "linux", reason="mounting a tmpfs needs root on Linux"
)
def test_real_full_disk_while_writing_shards(shard_inputs: Path):
    root = shard_inputs
    total = sum(p.stat().st_size for p in (root / "reference").rglob("*") if p.is_file())
    with tiny_tmpfs(root / "tiny", max(8, total // 1024 // 3)) as disk:
        run = run_entry_point(shards_argv(root, str(disk / "shards")), root)
        assert_disk_full_reported(run, disk / "shards")
        for tar_path in (disk / "shards").rglob("shard-*.tar"):  # what is there is whole
            with tarfile.open(tar_path) as tar:
                assert tar.getmembers()


def failing_write(code: int, n_writes: int = 5):
    """A tarfile whose `n_writes`-th member write fails with OS error `code` (as `write()` does: no file)."""
    calls = {"n": 0}
    real = tarfile.TarFile.addfile

    def addfile(self, tarinfo, fileobj=None):
        calls["n"] += 1
        if calls["n"] >= n_writes:
            raise OSError(code, os.strerror(code))
        return real(self, tarinfo, fileobj)

    return addfile


OUTPUT_ERRORS = {  # errno → what the one line must say
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large",
    errno.ENAMETOOLONG: "file name too long",
    errno.EDQUOT: "no space left on device",
    errno.EIO: "input/output error",
}


@pytest.mark.parametrize("code", sorted(OUTPUT_ERRORS), ids=lambda c: errno.errorcode[c])
def test_every_output_side_os_error_is_one_line_naming_the_output(shard_inputs: Path, monkeypatch, code):
    root, out = shard_inputs, shard_inputs / f"err-{code}"
    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_write(code))
    run = run_entry_point(shards_argv(root, out.name), root)
    line = run.error_line()
    assert run.code == 2 and "Traceback" not in run.err, run.err[-2000:]
    assert OUTPUT_ERRORS[code] in line and f"{out.name}/train/shard-000000.tar" in line, line
    assert not list(out.rglob("index.json")) and not (out / "summary.json").exists()
    assert not temp_files(out), "a temporary file survived the failure"


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounting needs root on Linux")
def test_read_only_output_folder(shard_inputs: Path):
    """A real read-only file system (EROFS) under the output folder."""
    root = shard_inputs
    where = root / "ro"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        run = run_entry_point(shards_argv(root, str(where / "shards")), root)
    finally:
        subprocess.run(["umount", str(where)], check=False)
    line = run.error_line()
    assert run.code == 2 and "Traceback" not in run.err, run.err[-2000:]
    assert f"{where}/shards" in line and "read-only file system" in line, line


def test_file_size_limit(shard_inputs: Path):
    """A real EFBIG: the process's file-size limit (`ulimit -f`) is below the size of a shard."""
    root, out = shard_inputs, shard_inputs / "efbig"
    code = (
        "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
        f"sys.argv = {shards_argv(root, out.name)!r}; "
        f"runpy.run_path({str(ROOT / 'stages/shards.py')!r}, run_name='__main__')"
    )
    proc = start(["-c", code], root)
    text = proc.communicate(timeout=300)[0].decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in text, text[-2000:]
    assert len(lines) == 1 and "file too large" in lines[0] and f"{out.name}/" in lines[0], lines
    assert not temp_files(out) and not (out / "summary.json").exists()


# -- training and evaluation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root, _ = build_tiny_project(tmp_path_factory.mktemp("kill-train"), "medprobclip", epochs=3)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"] = {
        "split": "validate", "threshold_split": "validate", "probe_split": "train", "ks": [1, 5],
        "rsum_short_ks": [1, 5], "precision_ks": [1], "probe": {"epochs": 20}, "batch_size": 4,
        "robustness": {"corruptions": ["gaussian_noise", "rotation"], "severities": [1, 2, 3]},
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def train_argv(out: str) -> list[str]:
    return [str(ROOT / "stages/train.py"), "medprobclip", "--in-process", "--params", "params.yaml", "--shards", "shards",
            "--tokenizer", "tokenizer", "--out", out]  # fmt: skip


def evaluate_argv(model: str, out: str) -> list[str]:
    return [str(ROOT / "stages/evaluate.py"), "medprobclip", "--in-process", "--params", "params.yaml", "--shards", "shards",
            "--tokenizer", "tokenizer", "--model", model, "--metrics", f"{out}/metrics.json",
            "--plots", f"{out}/plots", "--figures", f"{out}/figures"]  # fmt: skip


def trained_outputs(out: Path) -> dict[str, str]:
    files = tree_digest(out / "best") | {"metrics.json": tree_digest(out)["metrics.json"]}
    return files | {"history.csv": tree_digest(out)["history.csv"]}


@pytest.fixture(scope="module")
def reference_run(project: Path) -> Path:
    run_ok(train_argv("models/reference"), project)
    return project / "models" / "reference"


def test_kill_during_training_then_rerun_matches_uninterrupted(project: Path, reference_run: Path):
    out = project / "models" / "killed"
    proc = start(train_argv("models/killed"), project)
    kill_when(proc, lambda: (out / "state" / "last.pt").exists())  # epoch 1 is saved: epoch 2 is running
    assert not (out / "best").exists() and not (out / "metrics.json").exists()
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    log = run_ok(train_argv("models/killed"), project)
    assert "starting from scratch" not in log
    assert trained_outputs(out) == trained_outputs(reference_run)
    assert json.loads((out / "run.json").read_text())["run_id"] == run_id, "the MLflow run was not continued"
    assert not leftovers(out)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a running process: a kill point that does not move with the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def evaluated(project: Path, reference_run: Path) -> float:
    """The uninterrupted evaluation and the CPU seconds it took."""
    proc = start(evaluate_argv("models/reference", "eval-reference"), project)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stdout.read().decode(errors="replace")[-3000:]
    return usage.ru_utime + usage.ru_stime


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
@pytest.mark.parametrize("fraction", [0.3, 0.75])
def test_kill_during_evaluation_then_rerun_matches_uninterrupted(project: Path, evaluated: float, fraction):
    out = project / f"eval-killed-{fraction}"
    proc = start(evaluate_argv("models/reference", out.name), project)
    kill_when(proc, lambda: cpu_seconds(proc.pid) > fraction * evaluated)
    reference = tree_digest(project / "eval-reference")
    finished = {k: v for k, v in (tree_digest(out) if out.exists() else {}).items() if ".tmp" not in k}
    assert finished.items() <= reference.items(), "a half-written evaluation output"
    run_ok(evaluate_argv("models/reference", out.name), project)
    assert tree_digest(out) == reference
    assert not leftovers(out) and not leftovers(project / "models")


# -- DVC's view of a killed stage -----------------------------------------------------------------------


DVC = str(Path(sys.executable).parent / "dvc")


def dvc_env() -> dict[str, str]:
    return os.environ | {"DVC_NO_ANALYTICS": "1", "PATH": f"{Path(DVC).parent}:{os.environ['PATH']}"}


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([DVC, *args], cwd=cwd, env=dvc_env(), capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_dvc_never_accepts_a_killed_shards_stage(tmp_path: Path):
    where = tmp_path / "project"
    where.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", where / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", where / ".dvcignore")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthesize"] |= {"n_patients": 25, "image_scale": 0.05, "workers": 1}
    params["shards"] |= SHARDS_PARAMS | {"max_reject_fraction": 0.5}
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=where, check=True)
    dvc(where, "init", "-q")
    dvc(where, "repro", "shards")
    reference = tree_digest(where / "data" / "shards")
    proc = subprocess.Popen([DVC, "repro", "-f", "-s", "shards"], cwd=where, env=dvc_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    marker = where / "data" / "shards" / "train" / ".shard-000002.tar.done.json"
    kill_when(proc, marker.exists, group=True)  # dvc and the stage command it runs
    status = dvc(where, "status", "shards").stdout
    assert "shards" in status and "modified" in status, status
    finished = (where / "data" / "shards" / "train" / "shard-000000.tar").stat()
    dvc(where, "repro", "shards")
    assert tree_digest(where / "data" / "shards") == reference
    again = (where / "data" / "shards" / "train" / "shard-000000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns), "not reused"
    assert not leftovers(where / "data" / "shards")
    assert "up to date" in dvc(where, "status", "shards").stdout
