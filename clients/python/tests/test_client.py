"""The Python client against a live `pancap serve`."""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from pancap_client import Client, pb


def test_model_info(client: Client) -> None:
    info = client.model_info()
    assert info.name
    assert info.architecture.image_tokens > 0
    assert info.architecture.vocab_size > 0
    assert info.limits.max_stages == 4
    assert info.limits.default_max_new_tokens == 1024


def test_caption(client: Client, png_path) -> None:
    resp = client.caption(png_path, stages=2, max_new_tokens=[6, 6], request_id="py-1")
    assert resp.request_id == "py-1"
    assert [s.stage for s in resp.stages] == [pb.STAGE_LOCALIZE, pb.STAGE_TAG]
    assert (resp.image_width, resp.image_height) == (64, 40)
    for s in resp.stages:
        assert s.usage.generated_tokens <= 6
        assert s.usage.prompt_tokens > 0
        assert s.finish_reason != pb.FINISH_REASON_UNSPECIFIED
    assert resp.caption == ""  # stage 4 did not run


def test_stream_caption(client: Client, png_path) -> None:
    events = list(client.stream_caption(png_path, stages=4, max_new_tokens=[4] * 4, ignore_eos=True))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "final"
    assert kinds.count("final") == 1
    assert kinds.count("stage_started") == 4
    assert kinds.count("stage_finished") == 4
    assert kinds.index("image_encoded") < kinds.index("stage_started")
    final = events[-1].final
    assert len(final.stages) == 4
    deltas = {}
    for e in events:
        if e.HasField("token_delta"):
            deltas.setdefault(e.token_delta.stage, []).extend(e.token_delta.token_ids)
    for s in final.stages:
        assert s.usage.generated_tokens == 4  # ignore_eos forces the length
        assert deltas[s.stage] == list(s.token_ids)
        assert s.finish_reason == pb.FINISH_REASON_LENGTH


def test_stream_caption_closed_early(client: Client, png_path) -> None:
    stream = client.stream_caption(png_path, max_new_tokens=[50], ignore_eos=True)
    first = next(stream)
    assert first.WhichOneof("event") in ("queued", "image_encoded", "stage_started")
    stream.close()  # cancels the call
    assert client.model_info().name  # the server goes on serving


def test_generate(client: Client, png_path) -> None:
    events = list(client.generate("Describe the image.", png_path, max_new_tokens=5, ignore_eos=True))
    final = events[-1].final
    assert final.usage.generated_tokens == 5
    assert len(final.token_ids) == 5
    text = "".join(e.token_delta.text for e in events if e.HasField("token_delta"))
    assert text.strip() == final.text.strip()


def test_invalid_argument_names_field(client: Client, png_path) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.caption(png_path, stages=9)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("stages:")

    with pytest.raises(grpc.RpcError) as err:
        client.caption(png_path, sampling=pb.SamplingParams(top_p=2.0))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.top_p" in err.value.details()


def test_undecodable_image(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.caption(b"not an image")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metrics(server, client: Client) -> None:
    client.model_info()
    with urllib.request.urlopen(f"http://{server.metrics_addr}/metrics", timeout=10) as r:
        body = r.read().decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="GetModelInfo"' in body


def test_auth(auth_server) -> None:
    with Client(auth_server.addr, timeout=30) as anon:
        assert anon.serving()  # health needs no token
        with pytest.raises(grpc.RpcError) as err:
            anon.model_info()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(auth_server.addr, token="s3cret", timeout=30) as c:
        assert c.model_info().name
