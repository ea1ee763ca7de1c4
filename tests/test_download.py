"""Downloads against a loopback HTTP server on 127.0.0.1: resume, verification, failures.

No test here reaches any other host: a missing host is simulated by refusing to resolve it.
"""

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fillblank.data.download import Remote, checksum, download
from fillblank.errors import UserError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA256 = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


class Server(ThreadingHTTPServer):
    """Serves PAYLOAD at any path, honouring Range; `drop_after` bytes into the first
    response it hangs up; `status` replaces every answer with that error."""

    drop_after: int | None = None
    honour_range = True
    status: int | None = None

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[str | None] = []  # the Range header of each request

    def url(self, name: str = "data.zip") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        server: Server = self.server
        server.requests.append(self.headers.get("Range"))
        if server.status:
            self.send_error(server.status)
            return
        start = 0
        if server.honour_range and self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        body = PAYLOAD[start:]
        if server.drop_after is not None:
            body, server.drop_after = body[: server.drop_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_download_is_verified_and_renamed_into_place(server, tmp_path):
    path = download(Remote(server.url(), SHA256), tmp_path, "flickr8k", wait_s=0)
    assert path == tmp_path / "data.zip"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zip"]


def test_an_interrupted_transfer_resumes_where_it_stopped(server, tmp_path):
    server.drop_after = 300_000
    path = download(Remote(server.url(), SHA256), tmp_path, "flickr8k", wait_s=0)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=300000-"]


def test_a_server_that_ignores_range_is_read_again_from_the_start(server, tmp_path):
    server.drop_after, server.honour_range = 300_000, False
    path = download(Remote(server.url(), SHA256), tmp_path, "flickr8k", wait_s=0)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=300000-"]


def test_a_checksum_mismatch_fails_cleanly_and_leaves_nothing(server, tmp_path):
    wrong = "sha256:" + "0" * 64
    with pytest.raises(UserError, match="checksum mismatch") as error:
        download(Remote(server.url(), wrong), tmp_path, "flickr8k", wait_s=0)
    assert wrong in str(error.value) and SHA256 in str(error.value) and "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_md5_entries_are_checked_too(server, tmp_path):
    md5 = "md5:" + hashlib.md5(PAYLOAD).hexdigest()
    assert download(Remote(server.url(), md5), tmp_path, "flickr8k", wait_s=0).read_bytes() == PAYLOAD
    with pytest.raises(UserError, match="checksum mismatch"):
        download(Remote(server.url("other.zip"), "md5:" + "0" * 32), tmp_path, "flickr8k", wait_s=0)
    assert not (tmp_path / "other.zip").exists()


def test_a_missing_host_fails_at_once_saying_how_to_work_offline(tmp_path, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "data.example.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(UserError) as error:
        download(Remote("http://data.example.invalid/data.zip", SHA256), tmp_path, "flickr8k", wait_s=0)
    message = str(error.value)
    assert "host data.example.invalid not found" in message
    assert "set sources.flickr8k in params.yaml to a folder holding data.zip" in message
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_keeps_failing_is_retried_then_given_up(server, tmp_path):
    server.status = 503
    with pytest.raises(UserError, match=r"HTTP 503 .*gave up after 3 tries"):
        download(Remote(server.url(), SHA256), tmp_path, "coco", tries=3, wait_s=0)
    assert len(server.requests) == 3
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_is_not_retried(server, tmp_path):
    server.status = 404
    with pytest.raises(UserError, match="HTTP 404"):
        download(Remote(server.url(), SHA256), tmp_path, "coco", wait_s=0)
    assert len(server.requests) == 1


def test_nothing_listening_is_retried_then_reported(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match="refused.*gave up after 2 tries.*sources.coco"):
        download(Remote(f"http://127.0.0.1:{port}/x.zip", SHA256), tmp_path, "coco", tries=2, wait_s=0)


def test_checksum_names_its_algorithm(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert checksum(path) == SHA256
    assert checksum(path, "md5") == "md5:" + hashlib.md5(PAYLOAD).hexdigest()
