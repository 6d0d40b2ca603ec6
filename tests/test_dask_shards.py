"""The shard stage on a real Dask cluster (2 single-threaded workers on 127.0.0.1) through Prefect's
DaskTaskRunner: byte-identical to the process pool, tasks ran on the cluster, a killed worker is retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_shards import make_study_fixture

from pipeline import parallel
from pipeline.buildinfo import tree_sha256
from pipeline.shards import ShardsConfig, create_shards
from pipeline.shards import writer as shard_writer

ROOT = Path(__file__).resolve().parents[1]
CFG = ShardsConfig(samples_per_shard=2, workers=2)
SPLITS = {"train": 9, "validate": 4, "test": 3}


def test_executor_is_chosen_by_environment():
    assert parallel.executor_from_env({}) == parallel.ExecutorChoice("process")
    address = "tcp://127.0.0.1:8786"
    assert parallel.executor_from_env({"DASK_SCHEDULER_ADDRESS": address}) == parallel.ExecutorChoice(
        "dask", address
    )
    assert parallel.executor_from_env({"PIPELINE_EXECUTOR": "dask"}) == parallel.ExecutorChoice("dask")
    both = {"DASK_SCHEDULER_ADDRESS": address, "PIPELINE_EXECUTOR": "process"}
    assert parallel.executor_from_env(both).kind == "process"
    with pytest.raises(parallel.ExecutorError, match="choose one of process, dask"):
        parallel.executor_from_env({"PIPELINE_EXECUTOR": "spark"})


def test_mixed_builds_are_refused():
    driver = parallel.byte_build()
    parallel.check_builds(driver, {"tcp://a": dict(driver)})
    other = dict(driver, pillow="9.0.0")
    with pytest.raises(parallel.ExecutorError, match=r"tcp://b runs a different build \(pillow: driver"):
        parallel.check_builds(driver, {"tcp://a": dict(driver), "tcp://b": other})


def test_mismatched_worker_is_refused_before_the_piece_writes(tmp_path):
    written = []

    def write_shard(name: str) -> str:
        (tmp_path / name).write_text("bytes of another libjpeg")
        written.append(name)
        return name

    driver = parallel.byte_build()
    other = dict(driver, libjpeg_turbo="0.0.0")
    with pytest.raises(parallel.ExecutorError, match=r"different build \(libjpeg_turbo: driver '0.0.0'"):
        parallel.run_piece(write_shard, "shard-000000.tar", other)
    assert written == [] and list(tmp_path.iterdir()) == []
    assert parallel.run_piece(write_shard, "shard-000000.tar", driver)[0] == "shard-000000.tar"


def test_cluster_map_asks_the_workers_once_per_stage(monkeypatch):
    distributed = pytest.importorskip("distributed")
    opened = []

    class FakeClient:
        def __init__(self, address: str, timeout: float) -> None:
            opened.append(address)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def run(self, fn):
            return {"tcp://w1": fn()}

    def submit(address, fn, items, desc, reference):
        return [parallel.run_piece(fn, item, reference) for item in items]

    monkeypatch.setattr(distributed, "Client", FakeClient)
    mapper = parallel.ClusterMap("tcp://127.0.0.1:1", submit)
    with parallel.use_mapper(mapper):
        for _ in range(3):
            assert parallel.parallel_map(abs, [-1, -2], 2, "x") == [1, 2]
    assert opened == ["tcp://127.0.0.1:1"] and sum(mapper.pieces.values()) == 6


def test_installed_mapper_replaces_the_pool():
    calls = []

    def mapper(fn, items, desc):
        calls.append(desc)
        return [fn(x) for x in reversed(items)][::-1]

    with parallel.use_mapper(mapper):
        assert parallel.parallel_map(abs, [-1, 2, -3], 2, "x") == [1, 2, 3]
    assert calls == ["x"]
    assert parallel.parallel_map(abs, [-1, 2], 1, "y") == [1, 2] and calls == ["x"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-shards")
    mimic, studies, _ = make_study_fixture(root, SPLITS)
    create_shards(studies, mimic, root / "reference", CFG)
    return root, mimic, studies, tree_sha256(root / "reference")


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


def piece_keys(cluster) -> set[str]:
    """Keys of the tasks the scheduler ran to completion (its transition log)."""
    return {str(key) for key, _start, finish, *_ in cluster.scheduler.transition_log if finish == "memory"}


@pytest.mark.slow
def test_stage_on_existing_cluster_is_byte_identical(corpus, cluster, tmp_path):
    _root, mimic, studies, reference = corpus
    before = piece_keys(cluster)
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=cluster.scheduler_address, PYTHONPATH=str(ROOT))
    env.pop("PIPELINE_EXECUTOR", None)
    params = tmp_path / "params.yaml"
    params.write_text("shards:\n  samples_per_shard: 2\n  workers: 2\n")
    out, build = tmp_path / "shards", tmp_path / "build.json"
    cmd = [
        sys.executable,
        str(ROOT / "stages/shards.py"),
        "--studies",
        str(studies),
        "--mimic-root",
        str(mimic),
    ]
    cmd += ["--out", str(out), "--params", str(params), "--build", str(build)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree_sha256(out) == reference
    record = json.loads(build.read_text())
    workers = set(cluster.scheduler.workers)
    assert record["executor"] == "dask" and record["scheduler"] == cluster.scheduler_address
    assert set(record["pieces_per_worker"]) <= workers and len(record["pieces_per_worker"]) >= 1
    n_shards = sum(-(-n // CFG.samples_per_shard) for n in SPLITS.values())
    # every shard was written and every shard validated by a task on this cluster's workers
    assert sum(record["pieces_per_worker"].values()) == 2 * n_shards
    ran = piece_keys(cluster) - before
    assert len([k for k in ran if k.startswith("piece_task-")]) >= 2 * n_shards, sorted(ran)[:5]


class DieOnce:
    """Stands in for `writer._run_task` on the workers (picklable: a class of this test module). The first
    piece to run kills its own worker process mid-run; Dask reschedules it on a live worker."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __call__(self, task, out_dir: str):
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return shard_writer._run_task(task, out_dir)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


def worker_pids(cluster) -> set[int]:
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=60)
        return set(client.run(os.getpid).values())


KILLED_RUN = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
from test_dask_shards import CFG, DieOnce
from pipeline import parallel
from pipeline.prefect_env import load_flows
from pipeline.shards import create_shards
from pipeline.shards import writer as shard_writer
shard_writer._run_task = DieOnce({flag!r})
mapper = parallel.ClusterMap({address!r}, load_flows().run_pieces_on_dask)
with parallel.use_mapper(mapper):
    create_shards({studies!r}, {mimic!r}, {out!r}, CFG)
"""


@pytest.mark.slow
def test_killed_worker_is_retried_with_identical_result(corpus, cluster, tmp_path, prefect_server):
    """The driver runs in its own process, as a stage does: a process that ran a Prefect flow on Dask
    leaves fork-started children (e.g. DataLoader workers) exiting with status 1, which would break later
    tests of this session."""
    from prefect.settings import PREFECT_API_URL

    _root, mimic, studies, reference = corpus
    flag, out = tmp_path / "killed.pid", tmp_path / "shards"
    code = KILLED_RUN.format(
        tests=str(ROOT / "tests"),
        root=str(ROOT),
        flag=str(flag),
        address=cluster.scheduler_address,
        studies=str(studies),
        mimic=str(mimic),
        out=str(out),
    )
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value() or "")
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert flag.is_file(), "no worker was killed"
    assert tree_sha256(out) == reference
    # the killed process really was a cluster worker, and the nanny replaced it
    assert int(flag.read_text()) not in worker_pids(cluster)


SECTIONS_RUN = """
import json, sys
sys.path[:0] = [{root!r}]
from pipeline import parallel
from pipeline.mimic.reports import section_reports
from pipeline.prefect_env import load_flows
mapper = parallel.ClusterMap({address!r}, load_flows().run_pieces_on_dask)
with parallel.use_mapper(mapper):
    section_reports({reports!r}, workers=2, progress=False).to_parquet({out!r})
print(json.dumps(mapper.pieces))
"""


@pytest.mark.slow
def test_sections_on_cluster_match_the_pool(cluster, tmp_path, prefect_server):
    """Driver in its own process, as in the killed-worker test."""
    import pandas as pd
    from prefect.settings import PREFECT_API_URL
    from test_reports_tree import GOOD, put

    from pipeline.mimic.reports import section_reports

    reports = tmp_path / "reports"
    for i in range(40):
        put(reports, 10000000 + i % 7, 50000000 + i, GOOD.replace("clear", f"clear {i}").encode())
    pool = section_reports(reports, workers=2, progress=False)
    out = tmp_path / "on_cluster.parquet"
    code = SECTIONS_RUN.format(
        root=str(ROOT), address=cluster.scheduler_address, reports=str(reports), out=str(out)
    )
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value() or "")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pieces = json.loads(done.stdout.strip().splitlines()[-1])
    pd.testing.assert_frame_equal(pd.read_parquet(out), pool)
    assert sum(pieces.values()) >= 2 and set(pieces) <= set(cluster.scheduler.workers)
