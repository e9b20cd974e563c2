"""Unit tests of the scene engine and the training data path.

Run: .venv/bin/python -m pytest training/test_training.py -q
"""

import os
import random
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import chain  # noqa: E402
import common  # noqa: E402
import scenes  # noqa: E402
import train  # noqa: E402


def test_to_frame_pads_to_square():
    # 256 × 192 sits at y offset 32 in a 256 square: thousandths of 256
    assert scenes.to_frame(0, 0, 256, 192) == (0, 125)
    assert scenes.to_frame(128, 96, 256, 192) == (500, 500)
    assert scenes.to_frame(256, 192, 256, 192) == (999, 875)
    assert scenes.to_frame(0, 0, 192, 256) == (125, 0)


def test_scenes_are_deterministic_and_valid():
    a = scenes.make_scene(random.Random(7))
    b = scenes.make_scene(random.Random(7))
    assert a[1] == b[1] and a[0].tobytes() == b[0].tobytes()
    for seed in range(20):
        img, s = scenes.make_scene(random.Random(seed))
        assert img.size == (s["width"], s["height"])
        assert 1 <= len(s["entities"]) <= 8
        names = [(e["colour"], e["tag"]) for e in s["entities"]]
        assert len(set(names)) == len(names)
        for e in s["entities"]:
            x1, y1, x2, y2 = e["box"]
            assert 0 <= x1 < x2 <= 999 and 0 <= y1 < y2 <= 999
        for rel in s["relations"]:
            assert rel in s["facts"]
        assert len(s["relations"]) <= scenes.MAX_RELATIONS


def test_entity_range():
    rng = random.Random(5)
    for _ in range(10):
        _, s = scenes.make_scene(rng, range(1, 2))
        assert len(s["entities"]) == 1
        s["caption"] = scenes.caption(s, rng)
        assert " one shape " in s["caption"] or s["caption"].split(".")[0].endswith("one shape")
        assert "shapes" not in s["caption"] and "there are" not in s["caption"]
    for _ in range(10):
        _, s = scenes.make_scene(rng, range(2, 4))
        assert 1 <= len(s["entities"]) <= 3


def test_load_run_reads_weights_only_checkpoints(tmp_path):
    """A checkpoint of weights, aux head and state alone (device.sh collect
    writes these: no optimiser) loads into the same model."""
    model = train.build_model()
    with torch.no_grad():
        model.multi_modal_projector.linear_2.bias.add_(1.0)  # differ from a fresh build
    torch.save({"model": model.state_dict(), "aux_head": None, "state": {"step": 7}}, tmp_path / "ckpt.pt")
    loaded, c = train.load_run(str(tmp_path))
    pixels = torch.randint(0, 256, (2, train.IMAGE_SIZE, train.IMAGE_SIZE, 3), dtype=torch.uint8).numpy()
    pv = train.normalise(pixels)
    model.eval()
    with torch.no_grad():
        assert torch.equal(train.image_features(loaded, pv), train.image_features(model, pv))
    assert c["state"]["step"] == 7 and not loaded.training


def test_patch_labels():
    grid = train.IMAGE_SIZE // train.VISION["patch_size"]
    box = [0, 0, 260, 130]  # patches (0, 0) and (0, 1): centres at 62.5 and 187.5 (row 0 only)
    inner = [100, 0, 240, 120]  # the smaller one wins where both hold a centre: (0, 1)
    sc = {"entities": [{"tag": "star", "box": box}, {"tag": "ring", "box": inner}]}
    lab = train.patch_labels([sc])[0]
    assert lab.shape == (grid * grid,)
    assert lab[0] == 1 + scenes.SHAPES.index("star") and lab[1] == 1 + scenes.SHAPES.index("ring")
    assert lab[2:].sum() == 0


def test_relations():
    assert scenes.relations_between((0, 0, 10, 10), (20, 0, 30, 10)) == ["left of"]
    assert scenes.relations_between((0, 0, 10, 10), (0, 20, 10, 30)) == ["above"]
    assert scenes.relations_between((2, 2, 4, 4), (0, 0, 10, 10)) == ["inside"]
    assert scenes.relations_between((0, 0, 30, 30), (20, 20, 40, 40)) == ["overlapping", "larger than"]


def test_tuples_follow_the_chain_format():
    rng = random.Random(3)
    for _ in range(10):
        _, s = scenes.make_scene(rng)
        s["caption"] = scenes.caption(s, rng)
        t = scenes.tuples(s, rng)
        boxes = [e["box"] for e in s["entities"]]
        tagged = [{"tag": e["tag"], "box": e["box"]} for e in s["entities"]]
        assert [x["stage"] for x in t] == [1, 2, 3, 4]
        assert t[0]["prompt"] == chain.PROMPTS[1]
        assert chain.parse_boxes(t[0]["answer"]) == boxes
        assert t[1]["prompt"] == chain.PROMPTS[2].format(chain.serialise_boxes(boxes))
        assert chain.parse_tagged(t[1]["answer"]) == tagged
        given = chain.parse_tagged(t[2]["prompt"][len(chain.PROMPTS[3].format("")):])
        merged = chain.merge(given, chain.parse_tagged(t[2]["answer"]), t[2]["answer"])
        assert sorted(map(str, merged)) == sorted(map(str, tagged))
        assert (t[2]["answer"] == "None") == (len(given) == len(tagged))
        assert t[3]["prompt"] == chain.PROMPTS[4].format(chain.serialise_tagged(tagged))
        assert t[3]["answer"] == s["caption"] and s["caption"].count("<box>") == len(boxes)


def test_batch_loss_masks_the_prompt():
    tok = common.load_tokenizer()  # the tiny preset's tokenizer
    tuples = [{"image": "a.png", "stage": 1, "prompt": chain.PROMPTS[1], "answer": "<box>[[1, 2, 3, 4]]</box>"},
              {"image": "a.png", "stage": 1, "prompt": chain.PROMPTS[1], "answer": "None"}]
    ex = train.encode_examples(tuples, tok, {"a.png": 0})[1]
    for _, prompt, answer in ex:
        assert prompt.count(common.IMAGE_TOKEN_INDEX) == 1 and prompt[0] == common.BOS
        assert answer[-1] == common.EOS and common.BOS not in answer
    model = train.build_model()
    pixels = torch.randint(0, 256, (1, train.IMAGE_SIZE, train.IMAGE_SIZE, 3), dtype=torch.uint8).numpy()
    head = torch.nn.Linear(train.TEXT["hidden_size"], 8)
    labels = torch.randint(0, 8, (1, 64)).numpy()
    loss, aux = train.batch_loss(model, ex, pixels, (head, labels))
    assert torch.isfinite(loss) and loss.item() > 0 and aux.item() > 0
    (loss + aux).backward()
    assert model.vision_tower.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert head.weight.grad.abs().sum() > 0
    feats = train.image_features(model, train.normalise(pixels[[0, 0]]))
    _, mask, y = train.collate(model, ex, feats)
    for b, (_, prompt, answer) in enumerate(ex):
        n = len(prompt) - 1 + 64  # text tokens + 64 image tokens
        assert mask[b].sum().item() == n + len(answer)
        assert (y[b, :n] == train.IGNORE).all()  # no prompt or image token is a target
        assert y[b, n: n + len(answer)].tolist() == answer
        assert (y[b, n + len(answer):] == train.IGNORE).all()


def test_collate_splices_like_concatenation():
    """collate's whole-tensor splice gives, row by row, the concatenation
    embed(prompt before <image>) + features + embed(rest + answer), then
    zeros."""
    model = train.build_model()
    torch.manual_seed(1)
    ex = [(0, [common.BOS, 5, 6, common.IMAGE_TOKEN_INDEX, 7], [8, 9, common.EOS]),
          (1, [common.BOS, common.IMAGE_TOKEN_INDEX, 7, 7, 7, 7], [common.EOS])]
    feats = torch.randn(2, 64, train.TEXT["hidden_size"])
    x, mask, y = train.collate(model, ex, feats)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        for b, (_, prompt, answer) in enumerate(ex):
            k = prompt.index(common.IMAGE_TOKEN_INDEX)
            want = torch.cat([embed(torch.tensor(prompt[:k])), feats[b], embed(torch.tensor(prompt[k + 1:] + answer))])
            assert torch.equal(x[b, :len(want)], want)
            assert not x[b, len(want):].any() and mask[b].sum().item() == len(want)


def test_stage_pool_weights():
    assert train.stage_pool([1, 2, 3, 4], [1, 1, 1, 1]) == [1, 2, 3, 4]
    assert train.stage_pool([1, 2, 3, 4], [3, 3, 1, 1]) == [1, 1, 1, 2, 2, 2, 3, 4]
    assert train.stage_pool([1, 2, 3, 4], [1, 1, 0, 0]) == [1, 2]
    examples = {st: [(i, [0], [st]) for i in range(50)] for st in (1, 2, 3, 4)}
    drawn = [train.draw_batch(examples, train.stage_pool([1, 2, 3, 4], [1, 1, 0, 0]), 4, 0, s)[0] for s in range(40)]
    assert set(drawn) == {1, 2}


def test_draw_batch_is_deterministic_and_bucketed():
    examples = {st: [(i, [0] * (i % 50), [st] * (1 + i % 7)) for i in range(300)] for st in (1, 2, 3, 4)}
    stage, a = train.draw_batch(examples, [1, 2, 3, 4], 16, 0, 5)
    assert (stage, a) == train.draw_batch(examples, [1, 2, 3, 4], 16, 0, 5)
    assert a != train.draw_batch(examples, [1, 2, 3, 4], 16, 0, 6)[1]
    assert len(a) == 16 and {e[2][0] for e in a} == {stage}  # one stage
    lengths = [len(e[1]) + len(e[2]) for e in a]
    assert lengths == sorted(lengths) and lengths[-1] - lengths[0] < 25  # a slice of a sorted draw
    seen = {train.draw_batch(examples, [1, 2, 3, 4], 4, 0, s)[0] for s in range(40)}
    assert seen == {1, 2, 3, 4}


def test_sincos_positions_tell_every_patch_apart():
    table = train.sincos_positions(8, 192)  # [65 × 192]
    assert table.shape == (65, 192)
    assert torch.all(table[0] == 0)
    # patch (r, c) = row 1 + 8r + c: its first half encodes r, its second c
    assert torch.allclose(table[1 + 8 * 3 + 5, :96], table[1 + 8 * 3 + 0, :96])
    assert torch.allclose(table[1 + 8 * 3 + 5, 96:], table[1 + 8 * 6 + 5, 96:])
    d = torch.cdist(table[1:], table[1:])
    assert d[~torch.eye(64, dtype=torch.bool)].min() > 0.5
    m = train.build_model()
    assert torch.equal(m.vision_tower.vision_model.embeddings.position_embedding.weight, table)


def test_probe_matches_boxes_one_to_one():
    import probe
    true = [(0, 0, 100, 100), (200, 200, 300, 300)]
    assert probe.matched([(0, 0, 100, 100)], true) == 1
    assert probe.matched([(0, 0, 100, 100), (5, 5, 100, 100)], true) == 1  # one true box, one match
    assert probe.matched([(0, 0, 100, 100), (210, 200, 300, 300)], true) == 2
    assert probe.matched([(50, 50, 150, 150)], true) == 0  # IoU 1/7
    assert probe.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
