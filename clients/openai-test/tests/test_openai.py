"""The OpenAI Python SDK against a real `pancap serve --http-addr`."""

from __future__ import annotations

import time

import openai
import pytest

from conftest import MAX_REQUEST_BYTES, Server

MODEL = "pancapchain"


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "pancap"


def test_chain_not_streaming(client: openai.OpenAI, image_part: dict) -> None:
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image_part]}],
                                       max_tokens=48)
    msg = r.choices[0].message
    ext = msg.model_extra["pancap"]
    assert r.object == "chat.completion" and msg.role == "assistant"
    assert [s["stage_name"] for s in ext["stages"]] == ["localize", "tag", "discover", "caption"]
    assert msg.content == ext["stages"][3]["text"]  # the answer is the caption
    assert ext["image_width"] == 96 and ext["image_height"] == 64
    for e in ext["entities"]:
        assert len(e["box"]) == 4 and len(e["box_px"]) == 4 and e["box_px"][2] <= 96
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens == sum(s["usage"]["completion_tokens"] for s in ext["stages"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chain_streaming(client: openai.OpenAI, image_part: dict) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image_part]}],
                                            max_tokens=6, stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    content, events, usage, finish = "", [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        ext = (chunk.model_extra or {}).get("pancap")
        if ext:
            events.append((ext["event"], ext.get("stage")))
        if chunk.choices:
            content += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert events[0] == ("queued", None) and events[-1] == ("done", None)
    assert [e for e in events if e[0] == "stage_finished"] == [("stage_finished", s) for s in (1, 2, 3, 4)]
    assert content and finish == "length"
    assert usage is not None and usage.completion_tokens == 4 * 6


def test_generate(client: openai.OpenAI, image_part: dict) -> None:
    messages = [{"role": "user", "content": [image_part, {"type": "text", "text": "What shapes are there?"}]}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_completion_tokens=8,
                                       temperature=0.7, seed=3, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
    assert "pancap" not in (r.choices[0].message.model_extra or {})
    again = client.chat.completions.create(model=MODEL, messages=messages, max_completion_tokens=8,
                                           temperature=0.7, seed=3, extra_body={"ignore_eos": True})
    assert again.choices[0].message.content == r.choices[0].message.content  # equal seeds, equal text
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0.7, seed=3, stream=True,
        extra_body={"ignore_eos": True}) if c.choices)
    assert text.strip() == r.choices[0].message.content


@pytest.mark.parametrize("kwargs,param", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"top_p": 1.5}, "top_p"),
    ({"temperature": -0.5}, "temperature"),
    ({"stop": ["x"] * 17}, "stop"),
    ({"max_tokens": 100000}, "max_tokens"),
    ({"extra_body": {"best_of": 3}}, "best_of"),
    ({"extra_body": {"pancap": {"stages": 9}}}, "pancap.stages"),
])
def test_bad_request_names_the_field(client: openai.OpenAI, image_part: dict, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image_part]}], **kwargs)
    assert e.value.status_code == 400 and e.value.param == param and e.value.type == "invalid_request_error"
    assert param.split(".")[0] in e.value.message


def test_remote_image_url_refused(client: openai.OpenAI) -> None:
    part = {"type": "image_url", "image_url": {"url": "https://169.254.169.254/latest/meta-data"}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [part]}])
    assert e.value.param == "messages[0].content[0].image_url" and "data: URI" in e.value.message


def test_unknown_model(client: openai.OpenAI, image_part: dict) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [image_part]}])
    assert e.value.code == "model_not_found"


def test_auth(server: Server, image_part: dict) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as e:
            bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image_part]}])
    assert e.value.code == "invalid_api_key"
    assert server.get("/v1/models", token=None)[0] == 401
    assert server.get("/health", token=None)[0] == 200  # health is open, as gRPC's


def test_oversize_body(client: openai.OpenAI) -> None:
    part = {"type": "text", "text": "x" * (MAX_REQUEST_BYTES + 1)}
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [part]}])
    assert e.value.status_code == 413 and "--max-request-bytes" in e.value.message


def wait_metric(server: Server, name: str, value: float, why: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while server.metric(name) != value:
        assert time.monotonic() < deadline, why
        time.sleep(0.02)


def test_disconnect_cancels(server: Server, client: openai.OpenAI, image_part: dict) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image_part]}],
                                            max_tokens=2000, stream=True, extra_body={"ignore_eos": True})
    next(iter(stream))
    wait_metric(server, "pancap_num_requests_running", 1, "the request never ran")
    start = time.monotonic()
    stream.close()  # long before its 8000 tokens
    wait_metric(server, "pancap_num_requests_running", 0, "the request kept running after the client went away", 2)
    assert time.monotonic() - start < 2


def test_metrics_for_the_endpoint_picker(server: Server) -> None:
    _, body = server.get("/metrics")
    for name in ("pancap_num_requests_waiting", "pancap_num_requests_running", "pancap_kv_cache_usage_perc",
                 'pancap_cache_config_info{block_size="16",num_gpu_blocks="'):
        assert name in body, name
    assert server.get("/metrics", token=None)[0] == 401  # /metrics shares the bearer token
