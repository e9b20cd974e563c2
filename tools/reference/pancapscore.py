"""PancapScore's deterministic parts as the Pancap authors compute them, for
the Go package score/ to be tested against.

The functions below re-implement, statement by statement and quirks
included, the authors' released code (Visual-AI/Pancap at commit b8012a4
"Add pancapscore", as carried by the public fork Reyazahm/Pancap):

  scripts_llmjudge/agg_jsons_asv2togt.py   asv2box2gtformat, the box rewrite
  pancapscore/eval_tag_and_loc.py          str2loc, parse_content, get_synonyms,
                                           compute_synonyms_score, eval_entity
                                           (its entity map), generate_questions_*
  pancapscore/eval_alldims.py              parse_content(mode), eval_entity,
                                           eval_attr, eval_relation, eval_global,
                                           eval_all's averages and PancapScore

with Debian's python3-nltk (WordNet read from Debian's wordnet-base files) and
python3-scipy (linear_sum_assignment). Two substitutions, both exact: the
authors' torchvision box_iou on float32 tensors is written in numpy float32
with the same operations in the same order, and sentence-transformers'
encode() is replaced by the vectors the recorded embeddings server returns
(then normalised and multiplied in float32 as factual_scene_graph's
encode_phrases does).

Usage (Debian packages: python3-nltk python3-scipy wordnet-base):

  /usr/bin/python3 tools/reference/pancapscore.py golden    # testdata/score/golden/*.json
  /usr/bin/python3 tools/reference/pancapscore.py fixtures  # testdata/score/e2e/{judge,expected}.json, preds, refs
  /usr/bin/python3 tools/reference/pancapscore.py expected  # expected.json only, from a judge.json recorded
                                                            # against a real endpoint (see docs/score.md)
  /usr/bin/python3 tools/reference/pancapscore.py wordnet   # testdata/score/wordnet/ (the WordNet subset)

`golden` and `fixtures` also rewrite the WordNet subset, which must cover every word they use.
"""

import hashlib
import json
import os
import random
import re
import sys
import tempfile

import numpy as np
from nltk.corpus.reader.wordnet import WordNetCorpusReader
from scipy.optimize import linear_sum_assignment

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTDATA = os.path.join(REPO, "testdata", "score")
GOLDEN = os.path.join(TESTDATA, "golden")
E2E = os.path.join(TESTDATA, "e2e")
SUBSET = os.path.join(TESTDATA, "wordnet")
PROMPTS = os.path.join(REPO, "score", "prompts")
WORDNET_DIR = os.environ.get("WORDNET_DIR", "/usr/share/wordnet")
SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# The lexicographer file names of WordNet 3.0, which NLTK's reader wants in a
# "lexnames" file that Debian does not ship (they only name synsets' files).
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
            "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
            "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
            "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
            "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
            "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
            "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()


def open_wordnet(directory=WORDNET_DIR):
    """NLTK's WordNetCorpusReader over a Princeton-format database directory."""
    d = tempfile.mkdtemp(prefix="pancapscore-wn-")
    for f in os.listdir(directory):
        os.symlink(os.path.join(directory, f), os.path.join(d, f))
    with open(os.path.join(d, "lexnames"), "w") as f:
        for i, n in enumerate(LEXNAMES):
            f.write("%02d\t%s\t%d\n" % (i, n, {"adj": 3, "adv": 4, "noun": 1, "verb": 2}[n.split(".")[0]]))
    import warnings
    warnings.simplefilter("ignore")
    return WordNetCorpusReader(d, None)


wn = None  # opened by main()


# --- scripts_llmjudge/agg_jsons_asv2togt.py -------------------------------

BOX_PATTERN = r'<box>\[\[(\d+), (\d+), (\d+), (\d+)\]\]</box>'


def asv2box2gtformat(box, width, height, org_size, new_size):
    if width > height:
        for i in range(4):
            box[i] *= width / new_size
        pad = (width - height) // 2
        box[1] -= pad
        box[3] -= pad
    else:
        for i in range(4):
            box[i] *= height / new_size
        pad = (height - width) // 2
        box[0] -= pad
        box[2] -= pad
    box = [box[0] / width * org_size, box[1] / height * org_size, box[2] / width * org_size, box[3] / height * org_size]
    new_box = []
    for b in box:
        if b < 0:
            b = 0
        if b > org_size:
            b = org_size
        new_box.append(b)
    return new_box


def convert_boxes(ans, width, height):
    new_ans = ans
    for mbox in re.finditer(BOX_PATTERN, ans):
        box = [float(mbox.group(i)) for i in range(1, 5)]
        box = asv2box2gtformat(box, width, height, 1.0, 1000)
        box_str = '[[{:.3f}, {:.3f}, {:.3f}, {:.3f}]]'.format(*box)
        new_ans = new_ans.replace(mbox.group(0), box_str)
    return new_ans


# --- pancapscore/eval_alldims.py (and eval_tag_and_loc.py) ----------------

def str2loc(s):
    try:
        s = s.lstrip('[').rstrip(']')
        s = [float(ss) for ss in s.split(',')]
        if len(s) != 4:
            raise NotImplementedError
        return s
    except Exception:
        return None


def parse_content(instr, mode):
    """parse_content of eval_alldims.py; eval_tag_and_loc.py's is mode
    'questions' / 'all_content' of it (no 'answer' branch)."""
    inv_cnt = 0
    tot_cnt = 0
    dct = {'entity': {}, 'location': {}, 'attribute': [], 'relation': [], 'global': []}
    str_list = []
    for content in instr.split('\n'):
        if content == '':
            continue
        try:
            idx = int(content.split('|')[0].rstrip(' '))
            content = content.replace('_', ' ')
            cls = content.split('|')[1].lstrip(' ').split(' -->> ')[0]
            assert cls in ['entity', 'location', 'attribute', 'relation', 'global']
            val = content.split('|')[1].lstrip(' ').split(' -->> ')[1].lstrip('(').rstrip(') ').split(',')
            if cls == 'entity':
                val = [v.lstrip(' ').rstrip(' ') for v in val]
            elif cls == 'attribute' or cls == 'location':
                val = [val[0].lstrip(' ').rstrip(' '), ','.join(val[1:]).lstrip('\" ').rstrip('\"')]
            elif cls == 'relation':
                val = [val[0].lstrip(' ').rstrip(' '), val[1].lstrip(' ').rstrip(' '), ','.join(val[2:]).lstrip('\" ').rstrip('\"')]
            else:
                val = [','.join(val[0:]).lstrip('\" ').rstrip('\"')]
        except Exception:
            continue
        tot_cnt += 1
        if cls == 'entity':
            dct['entity']['{} {}'.format(cls, idx)] = val[-1]
            str_list.append(content + '\n')
        elif cls == 'attribute':
            if 'answer' in mode:
                if val[0].startswith('entity'):
                    dct[cls].append((val[0], val[1]))
                else:
                    inv_cnt += 1
            elif val[0].startswith('entity'):
                if val[0] in dct['entity']:
                    if val[0] in val[1]:
                        dct[cls].append((val[0], val[1]))
                    else:
                        inv_cnt += 1
                else:
                    inv_cnt += 1
            elif val[0] == 'global' or val[0] == 'image':
                dct['global'].append(val[1])
            elif 'entity {}'.format(val[0]) in dct['entity']:
                dct[cls].append(('entity {}'.format(val[0]), val[1]))
            else:
                inv_cnt += 1
        elif cls == 'relation':
            if 'answer' in mode:
                if len(val) == 3 and val[0].startswith('entity') and val[1].startswith('entity'):
                    dct[cls].append((val[0], val[1], val[2]))
                else:
                    inv_cnt += 1
            elif len(val) == 3 and val[0].startswith('entity') and val[1].startswith('entity'):
                if val[0] in dct['entity'] and val[1] in dct['entity']:
                    if val[0] in val[2] and val[0] in val[2]:
                        dct[cls].append((val[0], val[1], val[2]))
                    else:
                        inv_cnt += 1
                else:
                    inv_cnt += 1
            else:
                e1 = val[0]
                e2 = val[1]
                if not e1.startswith('entity'):
                    e1 = 'entity {}'.format(e1)
                if not e2.startswith('entity'):
                    e2 = 'entity {}'.format(e2)
                if e1 in dct['entity'] and e2 in dct['entity']:
                    if e1 in val[2] and e2 in val[2]:
                        dct[cls].append((e1, e2, val[2]))
                    else:
                        inv_cnt += 1
                else:
                    inv_cnt += 1
        elif cls == 'global':
            dct['global'].append(val[0])
        else:
            val[1] = str2loc(val[1])
            if val[1] is None:
                inv_cnt += 1
            else:
                if val[0] in dct['entity']:
                    dct['location'][val[0]] = val[1]
                elif not val[0].startswith('entity') and 'entity {}'.format(val[0]) in dct['entity']:
                    dct['location']['entity {}'.format(val[0])] = val[1]
                else:
                    inv_cnt += 1
            if idx == len(str_list) + 1:
                str_list.append(content)
            else:
                str_list.append(content.replace(str(idx), str(len(str_list) + 1)) + '\n')
    return dct, inv_cnt, tot_cnt, str_list


def get_synonyms(word, pos=None):
    synsets = wn.synsets(word, pos) if pos is not None else wn.synsets(word)
    synonyms = set()
    for synset in synsets:
        for lemma in synset.lemmas():
            synonyms.add(lemma.name())
    return synonyms


def compute_synonyms_score(word1, word2, pos=None):
    if word1 in word2 or word2 in word1:
        return 1
    elif len(word1.split()) > 0 or len(word2.split() > 0):  # noqa: the authors' TypeError when word1 has no word
        pass
    synonyms1 = set({})
    for w in word1.split():
        synonyms1 |= get_synonyms(w, pos)
    synonyms2 = set({})
    for w in word2.split():
        synonyms2 |= get_synonyms(w, pos)
    return len(synonyms1.intersection(synonyms2)) / (len(synonyms1.union(synonyms2)) + 1e-6)


def box_iou32(a, b):
    """torchvision.ops.box_iou of one float32 box pair, operation by operation."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    area1 = (a[2] - a[0]) * (a[3] - a[1])
    area2 = (b[2] - b[0]) * (b[3] - b[1])
    lt = np.maximum(a[:2], b[:2])
    rb = np.minimum(a[2:], b[2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[0] * wh[1]
    union = area1 + area2 - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return float(inter / union)


def encode_phrases(vectors, gval_list, cval_list):
    """factual_scene_graph's encode_phrases over the recorded vectors."""
    feats = np.asarray([vectors[p] for p in gval_list + cval_list], dtype=np.float32)
    feats = feats / np.sqrt(np.sum(feats ** 2, axis=1, keepdims=True))
    return feats[:len(gval_list)], feats[len(gval_list):]


def eval_entity(gt_items, cand_items, gt_locs, cand_locs, vectors):
    """eval_alldims.eval_entity; returns the scores and the entity map of
    eval_tag_and_loc.eval_entity (the same matching)."""
    gval_list = [gval for gidx, gval in gt_items.items()]
    cval_list = [cval for cidx, cval in cand_items.items()]
    if gval_list and cval_list:
        gfeats, cfeats = encode_phrases(vectors, gval_list, cval_list)
        sent_sim = gfeats.dot(cfeats.T)
    gval_list = [(gidx, gval) for gidx, gval in gt_items.items()]
    cval_list = [(cidx, cval) for cidx, cval in cand_items.items()]
    cost_mat = np.zeros((len(gval_list), len(cval_list)))
    loc_flag = np.zeros((len(gval_list), len(cval_list)))
    for ii, (gidx, gval) in enumerate(gval_list):
        gloc = gt_locs[gidx] if gidx in gt_locs else None
        for jj, (cidx, cval) in enumerate(cval_list):
            cloc = cand_locs[cidx] if cidx in cand_locs else None
            if gval == cval:
                cost_mat[ii, jj] = -1000
            else:
                syn_score = compute_synonyms_score(gval, cval, 'n')
                if syn_score > 0:
                    cost_mat[ii, jj] = -100 * syn_score
                elif sent_sim[ii, jj] >= 0.5:
                    cost_mat[ii, jj] = -10 * sent_sim[ii, jj]
                else:
                    cost_mat[ii, jj] = 1e6
            if cost_mat[ii, jj] < 0 and gloc is not None and cloc is not None:
                biou = box_iou32(gloc, cloc)
                if biou >= 0.5:
                    cost_mat[ii, jj] += -1 * biou
                    loc_flag[ii, jj] = 1
    gt_idx, cand_idx = linear_sum_assignment(cost_mat)
    erec = eprec = lrec = lprec = 0
    emap = {}
    for ii, jj in zip(gt_idx, cand_idx):
        if cost_mat[ii, jj] < 0:
            erec += 1
            eprec += 1
            if loc_flag[ii, jj] > 0.5:
                lrec += 1
                lprec += 1
            emap[gval_list[ii][0]] = cval_list[jj][0]
    # The authors divide by len(gt_items) unguarded; an empty reference is
    # scored 0 here as in the Go code.
    erec = erec / len(gt_items) if gt_items else 0
    eprec = 0 if len(cand_items) == 0 else eprec / len(cand_items)
    lrec = lrec / len(gt_locs) if len(gt_locs) > 0 else 0.0
    if len(cand_locs) > 0:
        lprec /= len(cand_locs)
    ef1 = 0.0 if erec + eprec == 0.0 else 2 * erec * eprec / (erec + eprec)
    lf1 = 0.0 if lrec + lprec == 0.0 else 2 * lrec * lprec / (lrec + lprec)
    return erec, eprec, ef1, lrec, lprec, lf1, emap


def generate_questions(gt_dct, emap, line_idx):
    """generate_questions_attr, _relation and _global of eval_tag_and_loc.py."""
    out = []
    for gidx, gattr in gt_dct['attribute']:
        if gidx in emap:
            m = emap[gidx]
            out.append('{} | attribute -->> ({}, \"{}\") \n'.format(line_idx, m, gattr.replace(gidx, m)))
            line_idx += 1
    for gidx1, gidx2, grel in gt_dct['relation']:
        if gidx1 in emap and gidx2 in emap:
            m1, m2 = emap[gidx1], emap[gidx2]
            out.append('{} | relation -->> ({}, {}, \"{}\") \n'.format(line_idx, m1, m2, grel.replace(gidx1, m1).replace(gidx2, m2)))
            line_idx += 1
    for gglo in gt_dct['global']:
        out.append('{} | global -->> (\"{}\") \n'.format(line_idx, gglo))
        line_idx += 1
    return out


def answer_pair(text):
    """One answer's credit; a missing second answer (the authors' IndexError)
    counts as not "no", as in the Go code."""
    parts = text.split(',')
    ans1 = parts[0].lstrip('\'\" ,').rstrip('\'\" ,').lower()
    ans2 = parts[1].lstrip('\'\" ,').rstrip('\'\" ,').lower() if len(parts) > 1 else None
    return (0.5 if ans1 == 'yes' else 0) + (0.5 if ans2 == 'no' else 0)


def eval_questions(n_gt, gt_answers, n_cand, cand_answers):
    """eval_attr / eval_relation / eval_global over the answer texts."""
    if n_gt == 0:
        return 0, 0, 0
    rec = 0.0
    for ii, a in enumerate(gt_answers):
        rec += answer_pair(a)
        if ii >= n_gt:
            break
    prec = 0.0
    for ii, a in enumerate(cand_answers):
        prec += answer_pair(a)
        if ii >= n_cand:
            break
    rec /= n_gt
    if len(cand_answers) == 0 or n_cand == 0:
        prec = 0.0
    else:
        prec /= len(cand_answers)
    f1 = 0.0 if rec + prec == 0.0 else 2 * rec * prec / (rec + prec)
    return rec, prec, f1


# --- the recorded judge ----------------------------------------------------

def key(*parts):
    """The recorded server's and the Go cache's request key."""
    return hashlib.sha256("".join("%d:%s" % (len(p.encode()), p) for p in parts).encode()).hexdigest()


def prompt(name, *args):
    with open(os.path.join(PROMPTS, name + ".txt")) as f:
        return f.read().format(*args)


class Recorded:
    """judge.json: chat replies keyed by key('chat', model, system, user) and
    embeddings by key('embedding', model, text)."""

    def __init__(self, data, judge_model, emb_model):
        self.data, self.judge_model, self.emb_model = data, judge_model, emb_model

    def chat(self, user, make=None):
        k = key("chat", self.judge_model, SYSTEM, user)
        if k not in self.data["chat"]:
            if make is None:
                raise KeyError("no recorded reply for a prompt starting %r" % user[:80])
            self.data["chat"][k] = make()
        return self.data["chat"][k]

    def vectors(self, names, make=None):
        out = {}
        for n in names:
            k = key("embedding", self.emb_model, n)
            if k not in self.data["embeddings"]:
                if make is None:
                    raise KeyError("no recorded embedding for %r" % n)
                self.data["embeddings"][k] = make(n)
            out[n] = self.data["embeddings"][k]
        return out


def score_image(rec, pred, ref, scripted=None):
    """The authors' steps 1-9 for one image: judge replies from rec (made by
    scripted when missing), everything else as their code does it."""
    def ask(user, kind):
        return rec.chat(user, None if scripted is None else (lambda: scripted[kind]))

    ref_content = ask(prompt("extract", ref), "ref_content")
    ref_questions = ask(prompt("questions", ref, ref_content), "ref_questions")
    pred_content = ask(prompt("extract", pred), "pred_content")
    pred_questions = ask(prompt("questions", pred, pred_content), "pred_questions")

    def names(*dcts):
        return [v for d in dcts for v in d['entity'].values()]

    def make_vector(name):
        if scripted is not None and name in scripted["vectors"]:
            return scripted["vectors"][name]
        v = [0.0] * 64  # unrelated names: one-hot on a hashed axis
        v[int(hashlib.sha256(name.encode()).hexdigest(), 16) % 64] = 1.0
        return v

    gt_q, _, _, _ = parse_content(ref_questions, 'questions')
    cand_c, inv_c, _, cand_strs = parse_content(pred_content, 'all_content')
    vec1 = rec.vectors(names(gt_q, cand_c), None if scripted is None else make_vector)
    *_, emap = eval_entity(gt_q['entity'], cand_c['entity'], gt_q['location'], cand_c['location'], vec1)
    gt4pred = ''.join(cand_strs + generate_questions(gt_q, emap, len(cand_strs)))

    pred_q, _, _, _ = parse_content(pred_questions, 'questions')
    ref_c, _, _, ref_strs = parse_content(ref_content, 'all_content')
    vec2 = rec.vectors(names(pred_q, ref_c), None if scripted is None else make_vector)
    *_, emap2 = eval_entity(pred_q['entity'], ref_c['entity'], pred_q['location'], ref_c['location'], vec2)
    pred4gt = ''.join(ref_strs + generate_questions(pred_q, emap2, len(ref_strs)))

    pred_answers = rec.chat(prompt("answers", pred, gt4pred), None if scripted is None else (lambda: scripted_answers(gt4pred)))
    ref_answers = rec.chat(prompt("answers", ref, pred4gt), None if scripted is None else (lambda: scripted_answers(pred4gt)))

    # eval_alldims: gt = reference questions, cand = prediction content.
    gt_ans, _, _, _ = parse_content(pred_answers, 'answers')
    cand_ans, _, _, _ = parse_content(ref_answers, 'answers')
    erec, eprec, ef1, lrec, lprec, lf1, _ = eval_entity(gt_q['entity'], cand_c['entity'], gt_q['location'], cand_c['location'], vec1)
    a = eval_questions(len(gt_q['attribute']), [x[1] for x in gt_ans['attribute']], len(cand_c['attribute']), [x[1] for x in cand_ans['attribute']])
    r = eval_questions(len(gt_q['relation']), [x[2] for x in gt_ans['relation']], len(cand_c['relation']), [x[2] for x in cand_ans['relation']])
    g = eval_questions(len(gt_q['global']), gt_ans['global'], len(cand_c['global']), cand_ans['global'])
    return {
        "tag": [erec, eprec, ef1], "location": [lrec, lprec, lf1],
        "attribute": list(a), "relation": list(r), "global": list(g),
        "ref_questions_for_pred": gt4pred, "pred_questions_for_ref": pred4gt,
    }


def scripted_answers(questions):
    """A stand-in judge's answers to question lines: "Yes", "No" except for
    every third line ("No", "No") and every fifth ("Yes", "Yes"), with the
    entity and location lines copied as the authors' example shows."""
    out = []
    for m in re.finditer(r'(\d+) \| (entity|location|attribute|relation|global) -->> \(([^\n]*?)\) ?(?=\n|\d+ \||$)', questions):
        n, typ, tup = int(m.group(1)), m.group(2), m.group(3)
        if typ in ('entity', 'location'):
            out.append('{} | {} -->> ({})'.format(n, typ, tup))
            continue
        a = ('No', 'No') if n % 3 == 0 else ('Yes', 'Yes') if n % 5 == 0 else ('Yes', 'No')
        ents = re.findall(r'entity \d+', tup.split('"')[0])
        head = ''.join(e + ', ' for e in ents)
        out.append('{} | {} -->> ({}"{}", "{}")'.format(n, typ, head, a[0], a[1]))
    return '\n'.join(out)


def summarize(per_image):
    """eval_all's averages and PancapScore (sum over images / count)."""
    def avg(dim, i):
        return sum(x[dim][i] for x in per_image) / len(per_image)
    tot = {dim: [avg(dim, i) for i in range(3)] for dim in ("tag", "location", "attribute", "relation", "global")}
    tot["pancapscore"] = tot["tag"][2] + tot["location"][2] + tot["attribute"][2] + tot["relation"][2] + 0.1 * tot["global"][2]
    return tot


# --- golden files and fixtures --------------------------------------------

def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def golden():
    with open(os.path.join(GOLDEN, "inputs.json")) as f:
        inputs = json.load(f)
    boxes = [{"caption": c["caption"], "width": c["width"], "height": c["height"],
              "converted": convert_boxes(c["caption"], c["width"], c["height"])} for c in inputs["boxes"]]
    parses = []
    for text in inputs["parse"]:
        for mode in ("all_content", "answers"):
            d, inv, tot, strs = parse_content(text, mode)
            parses.append({"text": text, "answers": mode == "answers", "entities": [[k, v] for k, v in d['entity'].items()],
                           "locations": {k: [repr(x) for x in v] for k, v in d['location'].items()},
                           "attributes": [list(x) for x in d['attribute']], "relations": [list(x) for x in d['relation']],
                           "globals": d['global'], "lines": strs, "parsed": tot, "invalid": inv})
    synonyms = [{"a": a, "b": b, "score": repr(float(compute_synonyms_score(a, b, 'n')))} for a, b in inputs["synonyms"]]
    words = sorted({w for a, b in inputs["synonyms"] for w in a.split() + b.split()})
    lemma_sets = {w: sorted(get_synonyms(w, 'n')) for w in words}
    rng = random.Random(1)
    lsap = []
    for _ in range(300):
        n, m = rng.randint(1, 7), rng.randint(1, 7)
        vals = rng.choice([[-1000, 1e6], [-1000, -100, 1e6], [0, 1, 2], [-1000, -1000.5, -100, -37.5, 1e6]])
        cost = [[rng.choice(vals) for _ in range(m)] for _ in range(n)]
        r, c = linear_sum_assignment(np.asarray(cost, dtype=float))
        lsap.append({"cost": cost, "rows": r.tolist(), "cols": c.tolist()})
    ious = [{"a": [repr(float(x)) for x in a], "b": [repr(float(x)) for x in b], "iou": repr(box_iou32(a, b))}
            for a, b in inputs["iou"]]
    questions = []
    for q in inputs["questions"]:
        questions.append({**q, "score": list(eval_questions(q["n_ref"], q["pred_answers"], q["n_pred"], q["ref_answers"]))})
    def py(conv, x):
        try:
            return repr(conv(x))
        except ValueError:
            return None
    numbers = [{"text": x, "int": py(int, x), "float": py(float, x)} for x in inputs["numbers"]]
    write_json(os.path.join(GOLDEN, "golden.json"), {"numbers": numbers,
        "boxes": boxes, "parse": parses, "synonyms": synonyms, "lemmas": lemma_sets,
        "lsap": lsap, "iou": ious, "questions": questions})
    return words


def fixtures():
    with open(os.path.join(E2E, "source.json")) as f:
        src = json.load(f)
    rec = Recorded({"chat": {}, "embeddings": {}}, src["judge_model"], src["embeddings_model"])
    preds, refs = [], []
    for im in src["images"]:
        preds.append({"image": "/data/sa1b/" + im["image"], "width": im["width"], "height": im["height"], "caption": im["pred"]})
        refs.append({"image_path": im["image"], "gt_response": im["ref"]})
        scripted = dict(im, vectors=src["vectors"])
        score_image(rec, convert_boxes(im["pred"], im["width"], im["height"]), im["ref"], scripted)
    with open(os.path.join(E2E, "preds.jsonl"), "w") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    write_json(os.path.join(E2E, "refs.json"), refs)
    write_json(os.path.join(E2E, "judge.json"), rec.data)
    expected()


def expected():
    """expected.json from preds.jsonl, refs.json and judge.json alone."""
    with open(os.path.join(E2E, "source.json")) as f:
        src = json.load(f)
    with open(os.path.join(E2E, "judge.json")) as f:
        rec = Recorded(json.load(f), src["judge_model"], src["embeddings_model"])
    with open(os.path.join(E2E, "refs.json")) as f:
        refs = {'/'.join(r["image_path"].split('/')[-3:]): r["gt_response"] for r in json.load(f)}
    per_image = []
    with open(os.path.join(E2E, "preds.jsonl")) as f:
        for line in f:
            p = json.loads(line)
            img = '/'.join(p["image"].split('/')[-3:])
            pred = convert_boxes(p["caption"], p["width"], p["height"])
            res = score_image(rec, pred, refs[img])
            res["image"] = img
            per_image.append(res)
    out = {"images": [{k: (v if isinstance(v, str) else [repr(float(x)) for x in v]) for k, v in r.items()} for r in per_image]}
    tot = summarize(per_image)
    out["total"] = {k: (repr(float(v)) if k == "pancapscore" else [repr(float(x)) for x in v]) for k, v in tot.items()}
    write_json(os.path.join(E2E, "expected.json"), out)


def wordnet_subset(words):
    """The lines of index.noun, data.noun and noun.exc that NLTK's
    synsets(w, 'n') can read for each word: every form morphy could try
    (all rounds of its rules, the exception list) and their synsets."""
    exc = {}
    with open(os.path.join(WORDNET_DIR, "noun.exc")) as f:
        exc_lines = {}
        for line in f:
            t = line.split()
            exc[t[0]] = t[1:]
            exc_lines[t[0]] = line
    rules = [("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y")]
    forms, exc_keep = set(), set()
    for w in words:
        w = w.lower()
        todo = {w}
        if w in exc:
            exc_keep.add(w)
            todo |= set(exc[w])
        while todo:
            f = todo.pop()
            if f in forms:
                continue
            forms.add(f)
            todo |= {f[:-len(o)] + n for o, n in rules if f.endswith(o)}
    os.makedirs(SUBSET, exist_ok=True)
    offsets = set()
    # The licence header (lines starting with spaces) is kept in each file.
    with open(os.path.join(WORDNET_DIR, "index.noun")) as f, open(os.path.join(SUBSET, "index.noun"), "w") as out:
        for line in f:
            t = line.split()
            if line.startswith(" "):
                out.write(line)
            elif t[0] in forms:
                out.write(line)
                offsets |= set(t[-int(t[2]):])
    with open(os.path.join(WORDNET_DIR, "data.noun")) as f, open(os.path.join(SUBSET, "data.noun"), "w") as out:
        licence = []
        for line in f:
            if line.startswith(" "):
                out.write(line)
                licence.append(line.split(" ", 3)[-1].rstrip() if line.strip() else "")
            elif line.split(" ", 1)[0] in offsets:
                out.write(line)
    with open(os.path.join(SUBSET, "noun.exc"), "w") as out:
        for w in sorted(exc_keep):
            out.write(exc_lines[w])
    with open(os.path.join(SUBSET, "LICENSE"), "w") as out:
        out.write("\n".join(licence).strip() + "\n")


def e2e_words():
    """Every word of every entity name in the recorded judge replies."""
    path = os.path.join(E2E, "judge.json")
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        chat = json.load(f)["chat"]
    words = set()
    for text in chat.values():
        d, _, _, _ = parse_content(text, 'all_content')
        words |= {w for v in d['entity'].values() for w in v.split()}
    return words


def main():
    global wn
    wn = open_wordnet()
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what not in ("golden", "fixtures", "expected", "wordnet", "all"):
        sys.exit(__doc__)
    words = set(golden()) if what in ("golden", "wordnet", "all") else set()
    if what in ("fixtures", "all"):
        fixtures()
    if what == "expected":
        expected()
        return
    if what == "fixtures":
        with open(os.path.join(GOLDEN, "inputs.json")) as f:
            words |= {w for a, b in json.load(f)["synonyms"] for w in a.split() + b.split()}
    wordnet_subset(sorted(words | e2e_words()))


if __name__ == "__main__":
    main()
