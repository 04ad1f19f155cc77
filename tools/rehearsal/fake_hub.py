"""A local stand-in for the Hugging Face Hub, so that real download code runs without the internet.

The files under ``root`` are served as dataset repositories: ``root/<owner>/<name>/<path>`` is what
``hf_hub_download(repo_id="<owner>/<name>", filename="<path>", repo_type="dataset")`` fetches once
``HF_ENDPOINT`` points at this server. It answers just what the installed ``huggingface_hub`` client
asks for (read in its ``file_download.py``, and checked by tests/test_rehearsal_standins.py):

1. ``HEAD /datasets/<owner>/<name>/resolve/<revision>/<path>``: the file's metadata. The client requires
   ``X-Repo-Commit`` (a 40-hex commit id) and an ``ETag`` (its cache key: here the file's sha256, as the
   Hub gives for large files), and reads ``Content-Length`` to check the download and the free disk space.
2. ``GET`` on the same address: the bytes. ``Range: bytes=N-``, which the client sends only to resume
   a download that broke off, gets the rest of the file with status 206.

A missing repository, revision or file gets a 404 with the ``X-Error-Code`` header that the client turns
into ``RepositoryNotFoundError``, ``RevisionNotFoundError`` or ``EntryNotFoundError``; any other address
a plain 404 (the client's optional ``GET /api/agent-harnesses`` gets that and goes on). Every request is
logged in :attr:`FakeHub.requests`, so a test or the rehearsal can count downloads.

    python -m tools.rehearsal.fake_hub --root DIR [--port N]   # prints the URL; Ctrl-C stops it
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")
RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
CHUNK = 1 << 20  # bytes written per send


@dataclass(frozen=True)
class Request:
    """One request the hub answered."""

    method: str  # "HEAD" or "GET"
    path: str  # e.g. /datasets/owner/name/resolve/main/train.zip
    status: int  # 200, 206, 404, 416
    range: str | None  # the Range header, if any
    body_bytes: int  # bytes of the body actually sent


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 serving ``root`` as Hugging Face dataset repositories.

    Use it as a context manager (``with FakeHub(root) as hub: ... hub.url``) or call
    :meth:`start` and :meth:`stop`. ``port=0`` lets the OS pick a free port.
    ``interrupt_first_download_after=N`` closes the connection after N bytes of the first full
    download (a dropped connection), to check that the client resumes with a Range request.
    """

    def __init__(
        self,
        root: str | Path,
        port: int = 0,
        *,
        interrupt_first_download_after: int | None = None,
        echo: bool = False,
    ):
        self.root = Path(root).resolve()
        self.echo = echo  # print each request to stderr as it is answered
        self._requests: list[Request] = []
        self._in_flight = 0  # requests being answered: the client may have its answer before they are logged
        self._idle = threading.Condition()
        self._interrupt_after = interrupt_first_download_after
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # the handler reaches the hub through its server
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The value for ``HF_ENDPOINT``, e.g. ``http://127.0.0.1:43127``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def requests(self) -> list[Request]:
        """Every request answered so far, in order; waits (10 s at most) for those still being answered."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=10)
            return list(self._requests)

    def downloads(self, filename: str | None = None) -> list[Request]:
        """The GET requests that sent file bytes (status 200 or 206), of ``filename`` only if given."""
        return [
            r
            for r in self.requests
            if r.method == "GET"
            and r.status in (200, 206)
            and (filename is None or r.path.endswith("/" + filename))
        ]

    # What the handler needs -----------------------------------------------------------------------

    def _begin(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _log(self, request: Request) -> None:
        """Record an answered request (called once per :meth:`_begin`)."""
        with self._idle:
            self._requests.append(request)
            self._in_flight -= 1
            self._idle.notify_all()
        if self.echo:
            print(
                f"{request.method} {request.path} -> {request.status} ({request.body_bytes:,} bytes)",
                file=sys.stderr,
            )

    def _take_interruption(self) -> int | None:
        """The byte count at which to break this download, once; None for every other download."""
        with self._lock:
            after, self._interrupt_after = self._interrupt_after, None
            return after

    def _sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        with self._lock:
            self._hashes[key] = digest.hexdigest()
        return self._hashes[key]

    def commit_id(self, repo_dir: Path) -> str:
        """A 40-hex commit id that changes whenever a file of the repository changes."""
        digest = hashlib.sha1()
        for path in sorted(p for p in repo_dir.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(repo_dir).as_posix()}\0{self._sha256(path)}\n".encode())
        return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeHub/1"

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # requests go to FakeHub.requests instead of stderr

    def _answer(self, send_body: bool) -> None:
        hub: FakeHub = self.server.hub
        hub._begin()  # before any answer goes out, so a client never sees an answer the log lacks
        path = unquote(urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        status, sent = 500, 0  # logged as such if answering fails half-way
        try:
            status, sent = self._serve(hub, path, range_header, send_body)
        finally:
            hub._log(Request(self.command, path, status, range_header, sent))

    def _not_found(self, code: str | None, message: str) -> tuple[int, int]:
        body = message.encode()
        self.send_response(404)
        if code is not None:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)
        return 404, 0

    def _serve(self, hub: FakeHub, path: str, range_header: str | None, send_body: bool) -> tuple[int, int]:
        match = RESOLVE.match(path)
        if match is None:  # e.g. the client's optional /api/agent-harnesses lookup, which tolerates a 404
            return self._not_found(None, f"{path} is not served by this stand-in Hub")
        repo_dir = (hub.root / match["repo"]).resolve()
        if not repo_dir.is_dir() or not repo_dir.is_relative_to(hub.root):
            return self._not_found("RepoNotFound", f"Repository not found: {path}")
        commit = hub.commit_id(repo_dir)
        if match["revision"] not in ("main", commit):
            return self._not_found("RevisionNotFound", f"Invalid rev id: {match['revision']}")
        file = (repo_dir / match["file"]).resolve()
        if not file.is_file() or not file.is_relative_to(repo_dir):
            return self._not_found("EntryNotFound", f"{match['file']} does not exist on {match['revision']}")

        size = file.stat().st_size
        start, end = 0, size - 1
        if range_header is not None:
            wanted = RANGE.match(range_header.strip())
            if wanted is None or int(wanted["start"]) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416, 0
            start = int(wanted["start"])
            end = min(int(wanted["end"]), size - 1) if wanted["end"] else size - 1
        status = 206 if range_header is not None else 200

        self.send_response(status)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hub._sha256(file)}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not send_body:
            return status, 0

        stop_at = hub._take_interruption() if status == 200 else None
        sent = 0
        try:
            with open(file, "rb") as f:
                f.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    block = f.read(min(CHUNK, remaining))
                    if stop_at is not None and sent + len(block) > stop_at:
                        self.wfile.write(block[: stop_at - sent])
                        sent = stop_at
                        self.close_connection = True  # the connection "drops" mid-download
                        break
                    self.wfile.write(block)
                    sent += len(block)
                    remaining -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; the log shows how far it got
        return status, sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rehearsal.fake_hub", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--root", type=Path, required=True, help="folder holding <owner>/<name>/<files>")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a folder")
    with FakeHub(args.root, args.port, echo=True) as hub:
        repos = sorted(p.relative_to(hub.root).as_posix() for p in hub.root.glob("*/*") if p.is_dir())
        print(hub.url, flush=True)
        print(
            f"serving {', '.join(repos) or 'no repositories yet'}; use HF_ENDPOINT={hub.url}", file=sys.stderr
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
