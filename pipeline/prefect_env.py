"""The Prefect settings this project relies on, applied before Prefect is imported (it reads its settings
at import), so importing any library module never changes the environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

from pipeline import parallel

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def apply_prefect_defaults() -> None:
    """Set each default unless the environment already says otherwise."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def load_flows() -> ModuleType:
    """`pipeline.flows`, imported after the defaults are in place (what entry points call)."""
    apply_prefect_defaults()
    import pipeline.flows

    return pipeline.flows


@contextlib.contextmanager
def data_executor(workers: int = 0) -> Iterator[parallel.ClusterMap | None]:
    """Run a data stage's `parallel_map` calls where the environment says (see `pipeline.parallel`):
    yields None for the default process pool (no Prefect started), else the `ClusterMap` whose
    `record()` names the workers and builds that wrote the pieces."""
    choice = parallel.executor_from_env()
    if choice.kind == "process":
        yield None
        return
    flows = load_flows()
    with parallel.dask_address(choice.address, workers) as address:
        mapper = parallel.ClusterMap(address, flows.run_pieces_on_dask)
        with parallel.use_mapper(mapper):
            yield mapper
