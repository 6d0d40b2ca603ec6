"""The Prefect settings this project relies on, applied before Prefect is imported (it reads its settings
at import), so importing any library module never changes the environment."""

from __future__ import annotations

import os
from types import ModuleType

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
