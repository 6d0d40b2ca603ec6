"""The error type for problems a user can fix, and the entry-point wrapper that reports them."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# OS errors that come from the machine or the file system, not from our code: a user fixes them (space,
# permissions, a mount, a limit), so they get one line naming the path instead of a traceback.
ENVIRONMENT_ERRNOS = (
    *DISK_FULL,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EFBIG,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EIO,
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EXDEV,
    errno.ETXTBSY,
)
# Of those, the ones that mean the machine or file system even when raised outside the output writers: a
# bare EISDIR, ENOTDIR, EXDEV, EPERM, ELOOP or EIO is as often our own bug (a wrong path built in code), so
# it keeps its traceback unless `pipeline.io` raised it as an `OutputError` for a path it was writing.
BARE_ENVIRONMENT_ERRNOS = (
    *DISK_FULL,
    errno.EROFS,
    errno.EACCES,
    errno.EFBIG,
    errno.ENAMETOOLONG,
    errno.EMFILE,
    errno.ENFILE,
    errno.ETXTBSY,
)
_ADVICE = {
    errno.EROFS: "read-only file system; write the outputs to a writable folder (or remount it read-write)",
    errno.EACCES: "permission denied; check the owner and mode of the file and its folder (`ls -ld {dir}`)",
    errno.EPERM: "operation not permitted; check the owner and mode of the file and its folder "
    "(`ls -ld {dir}`)",
    errno.EFBIG: "file too large (a process file-size limit, `ulimit -f`, or the file system's maximum "
    "file size); raise the limit or write to another file system",
    errno.ENAMETOOLONG: "file name too long for the file system; use a shorter output path",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop); fix or remove the link",
    errno.EIO: "input/output error from the device; check the disk (`dmesg`) and rerun",
    errno.EMFILE: "too many open files; raise the limit (`ulimit -n`) or use fewer workers",
    errno.ENFILE: "too many open files on the system; close other programs or use fewer workers",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "is a folder where a file was expected; fix the path",
    errno.EXDEV: "cannot rename across file systems; keep the output folder on one file system",
    errno.ETXTBSY: "the file is busy (in use by a running program); stop it and rerun",
}


class PipelineError(Exception):
    """A problem with the user's data, parameters or setup; its message says what to do."""


class OutputError(PipelineError):
    """An output could not be written (disk full, read-only, permissions, size limit, name too long).

    Raised by the atomic writers in `pipeline.io`, the one door every output goes through; the message
    names the output and says what to do. Nothing half-written is kept (temporaries are removed)."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        # The message is the only positional argument, so `self.args == (message,)` and the error pickles:
        # raised in a process-pool or Dask worker it reaches the driver as itself (one line), not as a
        # BrokenProcessPool with a traceback.
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.errno, self.filename))

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | os.PathLike) -> OutputError:
        """The one line for `exc`, raised while writing output `path`."""
        return cls(os_error_message(exc, path, writing=True), exc.errno, str(exc.filename or path))


def disk_full_message(exc: OSError) -> str:
    """What a full disk means for a stage: nothing half-written was kept (every output is written to a
    temporary file and renamed), so freeing space and rerunning is all it takes."""
    where = f" writing {exc.filename}" if exc.filename else ""
    check = f"df -h {os.path.dirname(exc.filename) or '.'}" if exc.filename else "df -h"
    return (
        f"no space left on device{where}; free space (`{check}`) and rerun — outputs are written to "
        "temporary files first, so nothing partial was kept"
    )


def os_error_message(exc: OSError, path: str | os.PathLike | None = None, writing: bool = False) -> str:
    """One line for an OS error: the file it is about (the output being written, if known) and the fix."""
    if exc.errno in DISK_FULL:
        if not exc.filename and path is not None:
            exc = OSError(exc.errno, exc.strerror, str(path))
        return disk_full_message(exc)
    name = str(exc.filename or path or "")
    doing = f"cannot write {path}" if writing and path is not None else "cannot use"
    if writing and path is not None and exc.filename and str(exc.filename) != str(path):
        doing += f" ({exc.filename})"
    elif not writing and name:
        doing = name
    advice = _ADVICE.get(exc.errno or -1, exc.strerror or str(exc))
    return f"{doing}: {advice.format(dir=os.path.dirname(name) or '.')}"


def user_message(exc: BaseException) -> str | None:
    """The one line to show for an error the user can fix, or None for a bug (keep its traceback)."""
    if isinstance(exc, PipelineError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in BARE_ENVIRONMENT_ERRNOS:
        return os_error_message(exc)
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
