"""A thin typed wrapper over the generated pancap.v1 stubs."""

from __future__ import annotations

import json
import os
import time
from typing import Iterator, Optional, Sequence, Union

import grpc

from pancap_client._gen import pancap_pb2 as pb
from pancap_client._gen import pancap_pb2_grpc as pb_grpc

#: An image: a file path, or the encoded bytes (JPEG, PNG, WebP, GIF).
ImageInput = Union[str, "os.PathLike[str]", bytes]

_MAX_MESSAGE_BYTES = 64 << 20

# Retry UNAVAILABLE with exponential backoff on every Captioner method.
_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": "pancap.v1.Captioner"}],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.2s",
            "maxBackoff": "5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})

_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def _image_bytes(image: ImageInput) -> bytes:
    if isinstance(image, bytes):
        return image
    with open(image, "rb") as f:
        return f.read()


class Client:
    """A connection to a Pancap Serve server.

    Args:
        addr: "host:port" of the server.
        token: bearer token, when the server requires one.
        secure: connect over TLS (with ``root_certificates`` or the system roots).
        root_certificates: PEM of the CA that signed the server's certificate.
        timeout: default deadline of each call in seconds (None: none).
    """

    def __init__(
        self,
        addr: str,
        *,
        token: Optional[str] = None,
        secure: bool = False,
        root_certificates: Optional[bytes] = None,
        timeout: Optional[float] = 600.0,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG),
        ]
        if secure or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(addr, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(addr, options=options)
        self._stub = pb_grpc.CaptionerStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._timeout = timeout
        self._health = self._channel.unary_unary(
            _HEALTH_CHECK, request_serializer=bytes, response_deserializer=bytes)

    def close(self) -> None:
        """Close the connection."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stub(self) -> pb_grpc.CaptionerStub:
        """The raw generated stub, for calls this class does not wrap."""
        return self._stub

    def serving(self) -> bool:
        """Whether grpc.health.v1 reports the server SERVING (model loaded)."""
        try:
            return self._health(b"", timeout=5) == _SERVING
        except grpc.RpcError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server is SERVING; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not self.serving():
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not SERVING after {timeout} s")
            time.sleep(0.1)

    def caption_request(
        self,
        image: ImageInput,
        *,
        stages: int = 0,
        max_new_tokens: Sequence[int] = (),
        sampling: Optional[pb.SamplingParams] = None,
        stop: Sequence[str] = (),
        ignore_eos: bool = False,
        request_id: str = "",
    ) -> pb.CaptionRequest:
        """Build a CaptionRequest; ``image`` is a path or encoded bytes."""
        return pb.CaptionRequest(
            image=_image_bytes(image),
            stages=stages,
            max_new_tokens=list(max_new_tokens),
            sampling=sampling,
            stop=list(stop),
            ignore_eos=ignore_eos,
            request_id=request_id,
        )

    def caption(self, image: ImageInput, **kwargs) -> pb.CaptionResponse:
        """Run PancapChain on one image and return the whole result.

        Keyword arguments are those of :meth:`caption_request`.
        """
        req = self.caption_request(image, **kwargs)
        return self._stub.Caption(req, timeout=self._timeout, metadata=self._metadata)

    def stream_caption(self, image: ImageInput, **kwargs) -> Iterator[pb.CaptionEvent]:
        """Run PancapChain on one image and yield its events as they arrive,
        the last one carrying ``final``. Keyword arguments are those of
        :meth:`caption_request`. Closing the iterator early cancels the call.
        """
        req = self.caption_request(image, **kwargs)
        call = self._stub.StreamCaption(req, timeout=self._timeout, metadata=self._metadata)
        try:
            yield from call
        finally:
            call.cancel()

    def generate(
        self,
        prompt: str,
        image: Optional[ImageInput] = None,
        *,
        raw: bool = False,
        max_new_tokens: int = 0,
        sampling: Optional[pb.SamplingParams] = None,
        stop: Sequence[str] = (),
        ignore_eos: bool = False,
        request_id: str = "",
    ) -> Iterator[pb.GenerateEvent]:
        """Run one free-form prompt (on an optional image) and yield its
        events, the last one carrying ``final``."""
        req = pb.GenerateRequest(
            image=_image_bytes(image) if image is not None else b"",
            prompt=prompt,
            raw=raw,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            stop=list(stop),
            ignore_eos=ignore_eos,
            request_id=request_id,
        )
        call = self._stub.Generate(req, timeout=self._timeout, metadata=self._metadata)
        try:
            yield from call
        finally:
            call.cancel()

    def model_info(self) -> pb.ModelInfo:
        """Describe the server's model and limits."""
        return self._stub.GetModelInfo(
            pb.GetModelInfoRequest(), timeout=self._timeout, metadata=self._metadata)
