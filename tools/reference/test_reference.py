"""Unit tests of the reference's own logic (run: .venv/bin/python -m pytest
tools/reference/test_reference.py -q)."""

import torch

import chain
import checkpoints
import common


def test_parse_boxes_stops_at_malformed_and_drops_duplicates():
    text = "<box>[[1, 2, 3, 4]]</box>, <box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>, <box>[[9, 9"
    assert chain.parse_boxes(text) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert chain.parse_boxes("") == []
    assert chain.parse_boxes("x <box>[[1, 2, 3, 4]]</box>") == []
    assert chain.parse_boxes("<box>[[1, 2, 3]]</box>, <box>[[1, 2, 3, 4]]</box>") == []


def test_parse_tagged_uses_last_box_and_python_int():
    got = chain.parse_tagged("a, b <box> c <box>[[ 1, +2, 0_3, 004]]</box>, d <box>[[5, 6, 7, 8]]")
    assert got == [{"tag": "a, b <box> c", "box": [1, 2, 3, 4]}, {"tag": "d", "box": [5, 6, 7, 8]}]
    assert chain.parse_tagged("cat<box>[[1, 2, 3, 4]]</box>") == []


def test_merge_none_and_duplicates():
    s2 = [{"tag": "a", "box": [1, 2, 3, 4]}]
    s3 = [{"tag": "a", "box": [1, 2, 3, 4]}, {"tag": "b", "box": [1, 2, 3, 4]}]
    assert chain.merge(s2, s3, "b <box>") == s2 + s3[1:]
    assert chain.merge(s2, s3, "None b <box>[[1, 2, 3, 4]]") == s2
    assert chain.serialise_tagged(s3) == "a <box>[[1, 2, 3, 4]]</box>, b <box>[[1, 2, 3, 4]]</box>"


def test_tokenizer_image_token_keeps_one_bos():
    tok = common.load_tokenizer()
    ids = common.tokenizer_image_token(common.vicuna_prompt("Hi"), tok)
    assert ids[0] == common.BOS and ids.count(common.BOS) == 1
    assert ids.count(common.IMAGE_TOKEN_INDEX) == 1
    assert max(ids) < common.VOCAB


def test_random_weights_are_deterministic_and_not_identity():
    a = checkpoints.build_hf(56).state_dict()
    b = checkpoints.build_hf(56).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    norm = a["language_model.model.norm.weight"]
    assert not torch.allclose(norm, torch.ones_like(norm))
