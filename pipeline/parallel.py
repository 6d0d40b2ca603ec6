"""Where a data stage's independent pieces run: this machine's process pool, or an existing Dask cluster.

Execution is not a parameter: the runner is chosen from the environment at run time and never changes
output bytes, so DVC never sees it. ``DASK_SCHEDULER_ADDRESS=tcp://host:port`` (Dask's own convention)
sends the pieces to that cluster; ``PIPELINE_EXECUTOR=dask`` without an address starts a local cluster;
otherwise (the default) a process pool runs them, with no Prefect and no Dask involved.

The library only calls `parallel_map`. A cluster mapper is installed around a stage by its entry point
(`pipeline.prefect_env.data_executor`, which submits the pieces as Prefect tasks through prefect-dask), so
the library never imports its orchestration. Every piece reports the byte-relevant library builds of the
worker that ran it; a worker whose build differs from the driver's is refused (its Pillow/libjpeg-turbo or
numpy could write different bytes): the workers connected at the start are asked before anything is
submitted, and every piece checks its worker against the driver's build before it writes anything, so a
worker that joins later cannot leave bytes (and a done-marker a later run would resume from) behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from pipeline.buildinfo import build_info
from pipeline.errors import PipelineError

EXECUTOR_ENV = "PIPELINE_EXECUTOR"
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
EXECUTORS = ("process", "dask")
# What decides the bytes a piece writes (JPEG encoder, resampling, SIMD paths): must match the driver's.
# Not `numpy_simd`: it lists the CPU's features, so it differs between any two CPU models, yet numpy's part
# of a piece (elementwise float64 arithmetic, min/max, rint in `imaging.to_gray8`) is correctly rounded at
# every vector width; libjpeg-turbo's SIMD paths are selected by the `JSIMD_*` variables kept in `env`.
BYTE_BUILD_KEYS = ("machine", "numpy", "pillow", "libjpeg_turbo", "zlib", "env")

Mapper = Callable[[Callable[[Any], Any], list, str], list]
_MAPPER: ContextVar[Mapper | None] = ContextVar("pipeline_parallel_mapper", default=None)


class ExecutorError(PipelineError):
    """The environment names an executor we cannot use, or workers whose builds would change bytes."""


def effective_workers(workers: int) -> int:
    """`workers`, or every core this process may use when 0."""
    return workers or len(os.sched_getaffinity(0))


def parallel_map(fn: Callable, items: list, workers: int, desc: str, unit: str = "shard") -> list:
    """`[fn(x) for x in items]` in input order: on the installed cluster mapper if any (see
    `use_mapper`), else on a process pool when workers > 1, with a progress bar."""
    mapper = _MAPPER.get()
    if mapper is not None and items:
        return mapper(fn, items, desc)
    results: dict[int, object] = {}
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=None)
    if workers <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    return [results[i] for i in range(len(items))]


@contextlib.contextmanager
def use_mapper(mapper: Mapper) -> Iterator[None]:
    """Route every `parallel_map` call in this block through `mapper(fn, items, desc)`."""
    token = _MAPPER.set(mapper)
    try:
        yield
    finally:
        _MAPPER.reset(token)


@dataclass(frozen=True)
class ExecutorChoice:
    kind: str  # "process" | "dask"
    address: str | None = None  # dask without an address: start a LocalCluster


def executor_from_env(environ: dict[str, str] | None = None) -> ExecutorChoice:
    """The runner the environment asks for (``PIPELINE_EXECUTOR=process`` overrides an address)."""
    env = os.environ if environ is None else environ
    kind = env.get(EXECUTOR_ENV, "").strip().lower()
    address = env.get(SCHEDULER_ENV, "").strip() or None
    if kind not in ("", *EXECUTORS):
        raise ExecutorError(
            f"{EXECUTOR_ENV}={kind!r}: choose one of {', '.join(EXECUTORS)} (or leave it unset)"
        )
    if kind == "process" or (kind == "" and address is None):
        return ExecutorChoice("process")
    return ExecutorChoice("dask", address)


def byte_build() -> dict[str, Any]:
    """The parts of `build_info` that can change a data stage's output bytes."""
    info = build_info()
    return {key: info[key] for key in BYTE_BUILD_KEYS}


def worker_id() -> str:
    """The Dask worker address running this code, else host:pid."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def run_piece(
    fn: Callable[[Any], Any], item: Any, reference: dict[str, Any]
) -> tuple[Any, str, dict[str, Any]]:
    """One piece on a worker: (fn(item), who ran it, its byte build). The worker's build is checked against
    the driver's `reference` first, so a mismatched worker writes nothing (not even a done-marker)."""
    who, build = worker_id(), byte_build()
    check_builds(reference, {who: build})
    return fn(item), who, build


def check_builds(reference: dict[str, Any], builds: dict[str, dict[str, Any]]) -> None:
    """Refuse workers whose byte build differs from `reference` (the driver's)."""
    for worker, build in sorted(builds.items()):
        diff = {
            k: (reference.get(k), build.get(k)) for k in BYTE_BUILD_KEYS if build.get(k) != reference.get(k)
        }
        if diff:
            what = "; ".join(f"{k}: driver {a!r}, worker {b!r}" for k, (a, b) in diff.items())
            raise ExecutorError(
                f"Dask worker {worker} runs a different build ({what}), which can change output bytes; "
                "install the driver's versions on every worker (e.g. the same image or constraints.txt)"
            )


@dataclass
class ClusterMap:
    """A `Mapper` that runs pieces on the Dask cluster at `address` through `submit` (Prefect's flow:
    `pipeline.flows.run_pieces_on_dask`), checking and recording each worker's build."""

    address: str
    submit: Callable[[str, Callable, list, str, dict[str, Any]], list]
    reference: dict[str, Any] = field(default_factory=byte_build)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    pieces: dict[str, int] = field(default_factory=dict)
    checked: bool = False

    def check_workers(self) -> None:
        """Ask every connected worker for its build before anything is written (once per stage: workers
        joining later are checked by each piece, `run_piece`)."""
        if self.checked:
            return
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            found = client.run(byte_build)
        if not found:
            raise ExecutorError(f"Dask scheduler {self.address} has no workers")
        check_builds(self.reference, found)
        self.builds.update(found)
        self.checked = True

    def __call__(self, fn: Callable[[Any], Any], items: list, desc: str) -> list:
        self.check_workers()
        outputs = self.submit(self.address, fn, items, desc, self.reference)
        for _, who, build in outputs:
            self.builds[who] = build
            self.pieces[who] = self.pieces.get(who, 0) + 1
        return [result for result, _, _ in outputs]

    def record(self) -> dict[str, Any]:
        """What the stage's build record says about the cluster run (JSON-ready)."""
        return {
            "executor": "dask",
            "scheduler": self.address,
            "pieces_per_worker": dict(sorted(self.pieces.items())),
            "worker_builds": json.loads(json.dumps(self.builds, sort_keys=True)),
        }


def is_local_address(address: str) -> bool:
    """Whether a Dask scheduler address is on this host's loopback (its workers can reach our 127.0.0.1)."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def dask_address(address: str | None, workers: int) -> Iterator[str]:
    """`address`, or that of a LocalCluster (one single-threaded process per worker, on 127.0.0.1) that
    lives for the block."""
    if address is not None:
        yield address
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=effective_workers(workers),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address
