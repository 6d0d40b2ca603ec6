"""Run a command with one local Prefect server for all of its flow runs: `prefect_session.py dvc repro`.

Without `PREFECT_API_URL` every flow run starts (and stops) its own temporary server, 15–30 s each on two
cores; a `dvc repro` with ten training/evaluation stages would spend minutes on that alone. This starts one
server on 127.0.0.1 (no background services), points the command at it, and stops it afterwards. Flow runs
land in the server's database under `PREFECT_HOME` (default `.prefect/` in the project), so a later
`prefect server start --host 127.0.0.1` shows them. With `PREFECT_API_URL` already set the command just
runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Prefect server at {url} was not ready after {timeout:.0f} s")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get("PREFECT_API_URL"):
        return subprocess.call(argv)
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    port = free_port()
    # This interpreter's Prefect, whether or not its bin/ is on PATH.
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-services"]
    log = Path(env["PREFECT_HOME"]) / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        server = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api"
        wait_healthy(url, server, STARTUP_TIMEOUT_S)
        return subprocess.call(argv, env={**env, "PREFECT_API_URL": url})
    except RuntimeError as error:
        print(f"prefect_session: {error}; see {log}", file=sys.stderr)
        return 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
