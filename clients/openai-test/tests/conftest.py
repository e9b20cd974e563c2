"""Fixtures: a real `pancap serve` with its OpenAI-compatible HTTP API on free ports.

The process handling (free ports, the binary, start and stop, the test PNG) is
the Python client's (clients/python/tests/conftest.py), loaded from there.
"""

from __future__ import annotations

import base64
import importlib.util
import pathlib
import urllib.error
import urllib.request
from typing import Iterator

import openai
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]  # the repository
TOKEN = "s3cret"
MAX_REQUEST_BYTES = 1 << 20

_spec = importlib.util.spec_from_file_location("pancap_client_fixtures", ROOT / "clients/python/tests/conftest.py")
grpc_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grpc_fixtures)
pancap_bin = grpc_fixtures.pancap_bin  # the fixture: $PANCAP_BIN, else built from the repository


class Server(grpc_fixtures.Server):
    """A running `pancap serve --http-addr …` requiring the bearer token TOKEN."""

    def __init__(self, binary: str, log: pathlib.Path) -> None:
        self.http_addr = f"127.0.0.1:{grpc_fixtures.free_port()}"
        self.base_url = f"http://{self.http_addr}/v1"
        super().__init__(binary, log, ["--http-addr", self.http_addr, "--http-metrics", "--auth-token", TOKEN,
                                       "--max-request-bytes", str(MAX_REQUEST_BYTES)])

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, str]:
        """GET path on the HTTP API: the status and the body."""
        req = urllib.request.Request(f"http://{self.http_addr}{path}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric on the HTTP API's /metrics."""
        _, body = self.get("/metrics")
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)


@pytest.fixture(scope="session")
def server(pancap_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(pancap_bin, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        srv.wait_ready()
        assert srv.get("/health", token=None)[0] == 200
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def image_part() -> dict:
    """An image_url content part holding a 96×64 PNG as a data: URI."""
    uri = "data:image/png;base64," + base64.b64encode(grpc_fixtures.make_png(96, 64)).decode()
    return {"type": "image_url", "image_url": {"url": uri}}
