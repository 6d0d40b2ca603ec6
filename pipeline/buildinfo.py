"""What a data stage ran on: the library builds and CPU features that decide its output bytes.

The synthetic release and the shards are meant to be bit-identical on every x86-64 machine (see
`pipeline/synthetic/detmath.py`, `tests/test_golden_data.py`). When two machines still disagree, the cause
is a different build of something below the Python code: numpy (its SIMD dispatch), Pillow and its
libjpeg-turbo (JPEG bytes), zlib (the .csv.gz files), pyarrow (truth.parquet), glibc's libm. This record
names them so two machines can be compared. It varies by machine by design, so it must never be written
into a hashed data output: stages print it and write it only to a separate, uncached metrics file.
"""

from __future__ import annotations

import hashlib
import os
import platform
import zlib
from importlib import metadata
from pathlib import Path

# Environment variables that change which code paths the libraries take (and so, possibly, the bytes).
DISPATCH_ENV = (
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "GLIBC_TUNABLES",
    "JSIMD_FORCENONE",
    "JSIMD_FORCESSE2",
    "JSIMD_FORCEAVX2",
)


def numpy_simd() -> dict[str, list[str]]:
    """numpy's SIMD view of this CPU, as `np.show_runtime()` prints it: compiled-in baseline, the
    run-time dispatch targets this CPU supports (`found`) and those it lacks or were disabled."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
    features = umath.__cpu_features__
    dispatch = list(umath.__cpu_dispatch__)
    return {
        "baseline": list(umath.__cpu_baseline__),
        "found": [f for f in dispatch if features.get(f)],
        "not_found": [f for f in dispatch if not features.get(f)],
        "cpu_features": sorted(f for f, on in features.items() if on),
    }


def build_info() -> dict:
    """Versions, CPU features and dispatch-related environment that can change a data stage's bytes."""
    import numpy as np
    import PIL
    from PIL import features

    info: dict = {
        "python": platform.python_version(),
        "python_build": " ".join(platform.python_build()),
        "machine": platform.machine(),
        "system": platform.platform(),
        "libc": " ".join(platform.libc_ver()).strip(),
        "numpy": np.__version__,
        "numpy_simd": numpy_simd(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "env": {k: os.environ[k] for k in DISPATCH_ENV if k in os.environ},
    }
    return info


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def summary_line(info: dict) -> str:
    """One log line with what most often explains different bytes."""
    simd = info["numpy_simd"]
    return (
        f"build: python {info['python']}, numpy {info['numpy']} (SIMD {'+'.join(simd['baseline'])}"
        f" | {'+'.join(simd['found']) or '-'}), Pillow {info['pillow']} (libjpeg-turbo "
        f"{info['libjpeg_turbo']}), zlib {info['zlib']}, {info['libc'] or 'libc ?'}"
    )


def tree_sha256(root: str | os.PathLike) -> tuple[str, int]:
    """(one sha256 over every file below `root`: relative path and content digest, in sorted path order;
    the number of files), so two trees compare with one value."""
    root = Path(root)
    digest, n = hashlib.sha256(), 0
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        if path.is_file():
            content = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    content.update(block)
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + content.digest())
            n += 1
    return digest.hexdigest(), n


BUILD_HELP = (
    "also write the library versions and CPU features of this run to this JSON file "
    "(machine-dependent: keep it outside the hashed output)"
)


def add_build_argument(parser) -> None:
    """The data stages' ``--build PATH`` option (see `record_build`)."""
    parser.add_argument("--build", help=BUILD_HELP)


def record_build(path: str | None, stage: str, info: dict, **outputs) -> None:
    """Write `info` and the stage's output digests to `path` (when given): a user comparing two machines
    sees which library or CPU feature differs."""
    if path:
        from pipeline.io import write_json

        write_json(path, {"stage": stage, **outputs, **info})
