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


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; user-fixable errors print one line and exit 2 instead of a traceback."""
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"error: {disk_full_message(exc)}", file=sys.stderr)
        sys.exit(2)
