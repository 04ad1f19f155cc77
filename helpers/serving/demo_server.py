"""Run the web demo (``app/app.py``) as a separate process on a free local port.

For programs that talk to the demo the way a browser or ``gradio_client`` does: the tests, the
screenshot tool (``tools/demo_screenshot.py``), or a script of your own::

    with running_demo("build/detector", Path("build/server")) as url:
        Client(url).predict(handle_file("photo.jpg"), api_name="/predict")

Lesson 06 starts the demo inside the notebook instead (``helpers.serving.demo.launch_demo``); this runs
exactly what ``python app/app.py`` runs, in a checkout of the course.
"""

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

APP = Path(__file__).resolve().parents[1] / "app" / "app.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it). Lesson 06."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers; raise RuntimeError with the server's output if it exits or
    does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"the demo server exited with code {server.returncode} before answering.\n"
                f"Its output ({log}):\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise RuntimeError(
        f"the demo server did not answer at {url} within {timeout:.0f} s.\n"
        f"Its output ({log}):\n{log.read_text(errors='replace')}"
    )


@contextmanager
def running_demo(
    detector: str | os.PathLike, workdir: Path, *, extra_args: Sequence[str] = (), timeout: float = 90.0
) -> Iterator[str]:
    """Run ``python app/app.py --detector DETECTOR`` on a free loopback port; yield its URL; always
    stop it.

    The server runs in ``workdir`` (its examples and Gradio's upload cache go there) and writes its
    output to ``workdir/server.log`` (a file, not a pipe, which would block the server once full).
    """
    if not APP.is_file():
        raise FileNotFoundError(f"{APP} not found: running the demo this way needs a checkout of the course")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = workdir / "server.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(workdir / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [
        sys.executable,
        str(APP),
        "--detector",
        str(detector),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [*command, *extra_args], cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_until_serving(url, server, log, timeout)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
