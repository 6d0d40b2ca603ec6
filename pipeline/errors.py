"""The error type for problems a user can fix, and the entry-point wrapper that reports them."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class PipelineError(Exception):
    """A problem with the user's data, parameters or setup; its message says what to do."""


def disk_full_message(exc: OSError) -> str:
    """What a full disk means for a stage: nothing half-written was kept (every output is written to a
    temporary file and renamed), so freeing space and rerunning is all it takes."""
    where = f" writing {exc.filename}" if exc.filename else ""
    check = f"df -h {os.path.dirname(exc.filename) or '.'}" if exc.filename else "df -h"
    return (
        f"no space left on device{where}; free space (`{check}`) and rerun — outputs are written to "
        "temporary files first, so nothing partial was kept"
    )


def user_message(exc: BaseException) -> str | None:
    """The one line to show for an error the user can fix, or None for a bug (keep its traceback)."""
    if isinstance(exc, PipelineError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return disk_full_message(exc)
    return None


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; user-fixable errors print one line and exit 2 instead of a traceback."""
    try:
        main()
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
