"""Fixtures: a real `pancap serve` process on free ports."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import zlib
from typing import Iterator, List

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent  # the repository
sys.path.insert(0, str(HERE.parent))

from pancap_client import Client  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pancap_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pancap binary: $PANCAP_BIN, else built from the repository."""
    path = os.environ.get("PANCAP_BIN")
    if path:
        return path
    out = tmp_path_factory.mktemp("bin") / "pancap"
    subprocess.run(["go", "build", "-o", str(out), "./cmd/pancap"], cwd=ROOT, check=True)
    return str(out)


class Server:
    """A running `pancap serve`."""

    def __init__(self, binary: str, log: pathlib.Path, extra: List[str]) -> None:
        self.addr = f"127.0.0.1:{free_port()}"
        self.metrics_addr = f"127.0.0.1:{free_port()}"
        self.log = log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", self.addr, "--metrics-addr", self.metrics_addr, *extra],
            stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        with Client(self.addr) as c:
            try:
                c.wait_ready(timeout)
            except TimeoutError:
                self.stop()
                raise RuntimeError("pancap serve never became SERVING:\n" + self.log.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def _serve(binary: str, tmp: pathlib.Path, extra: List[str]) -> Iterator[Server]:
    srv = Server(binary, tmp / "serve.log", extra)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(pancap_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`pancap serve` on the embedded default model."""
    yield from _serve(pancap_bin, tmp_path_factory.mktemp("serve"), [])


@pytest.fixture(scope="session")
def auth_server(pancap_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`pancap serve` requiring the bearer token "s3cret"."""
    yield from _serve(pancap_bin, tmp_path_factory.mktemp("auth"), ["--auth-token", "s3cret"])


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.addr, timeout=120) as c:
        yield c


def make_png(width: int, height: int) -> bytes:
    """An RGB PNG with a colour gradient, written without any image library."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(((x * 255) // width, (y * 255) // height, (x * y) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def png_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("img") / "gradient.png"
    path.write_bytes(make_png(64, 40))
    return path
