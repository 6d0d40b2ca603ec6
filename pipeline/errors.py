"""The error type for problems a user can fix, and the entry-point wrapper that reports them."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's data, parameters or setup; its message says what to do."""


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; user-fixable errors print one line and exit 2 instead of a traceback."""
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
