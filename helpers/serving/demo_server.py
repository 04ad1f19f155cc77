"""Run the web demo (``app/app.py``, in a checkout) as a separate process on a free local port, for tests
and tools: ``with running_demo("build/detector", Path("build/server")) as url: Client(url).predict(...)``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app" / "app.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now. Lesson 06."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(
    detector: str | os.PathLike, workdir: Path, *, extra_args: Sequence[str] = (), timeout: float = 90.0
) -> Iterator[str]:
    """Run ``python app/app.py --detector DETECTOR`` on a free loopback port in ``workdir``, yield its URL,
    always stop it; its output goes to ``workdir/server.log`` (a full pipe would block it)."""
    if not APP.is_file():
        raise FileNotFoundError(f"{APP} not found: running the demo this way needs a checkout of the course")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = workdir / "server.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(workdir / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    args = ["--detector", str(detector), "--host", "127.0.0.1", "--port", str(port), *extra_args]
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, str(APP), *args], cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.25)
            else:  # it exited, or did not answer in time
                what = f"did not answer at {url} within {timeout:.0f} s"
                if server.poll() is not None:
                    what = f"exited with code {server.returncode} before answering"
                output = log.read_text(errors="replace")
                raise RuntimeError(f"the demo server {what}.\nIts output ({log}):\n{output}")
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
