package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pancap-serve/pancap/score"
	"github.com/pancap-serve/pancap/score/judge"
	"github.com/pancap-serve/pancap/score/wordnet"
)

// With -score.record-judge URL (and -score.record-embeddings URL) the
// recorded judge forwards every request it has no reply for to that real
// OpenAI-compatible endpoint and rewrites testdata/score/e2e/judge.json
// with what it got; tools/reference/pancapscore.py expected then recomputes
// expected.json from it (docs/score.md).
var (
	recordJudge      = flag.String("score.record-judge", "", "record missing judge replies from this endpoint")
	recordEmbeddings = flag.String("score.record-embeddings", "", "record missing embeddings from this endpoint")
)

var e2eDir = filepath.Join("..", "..", "testdata", "score", "e2e")

// recordedJudge is an OpenAI-compatible test server that replays the
// replies of testdata/score/e2e/judge.json: chat replies keyed by
// judge.Key("chat", model, system, user), embeddings by
// judge.Key("embedding", model, text).
type recordedJudge struct {
	t        *testing.T
	mu       sync.Mutex
	data     recording
	changed  bool
	requests atomic.Int64
}

type recording struct {
	Chat       map[string]string    `json:"chat"`
	Embeddings map[string][]float32 `json:"embeddings"`
}

// newRecordedJudge starts the recorded judge of the recording at path; its
// URL serves both the judge and the embeddings.
func newRecordedJudge(t *testing.T, path string) (*recordedJudge, string) {
	t.Helper()
	rj := &recordedJudge{t: t}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rj.data); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", rj.chat)
	mux.HandleFunc("POST /v1/embeddings", rj.embeddings)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		if !rj.changed {
			return
		}
		out, err := json.MarshalIndent(rj.data, "", " ")
		if err == nil {
			err = os.WriteFile(path, append(out, '\n'), 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	})
	return rj, srv.URL
}

func (rj *recordedJudge) chat(w http.ResponseWriter, r *http.Request) {
	rj.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model    string `json:"model"`
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) != 2 {
		http.Error(w, "want a model and two messages", http.StatusBadRequest)
		return
	}
	key := judge.Key("chat", req.Model, req.Messages[0].Content, req.Messages[1].Content)
	rj.mu.Lock()
	reply, ok := rj.data.Chat[key]
	rj.mu.Unlock()
	if !ok {
		if reply, ok = forward(*recordJudge, "/chat/completions", body, func(resp []byte) (string, error) {
			var cr struct {
				Choices []struct{ Message struct{ Content string } }
			}
			if err := json.Unmarshal(resp, &cr); err != nil || len(cr.Choices) == 0 {
				return "", io.ErrUnexpectedEOF
			}
			return cr.Choices[0].Message.Content, nil
		}); !ok {
			rj.t.Errorf("recorded judge: no reply for the prompt starting %q (key %s)", req.Messages[1].Content[:min(80, len(req.Messages[1].Content))], key)
			http.Error(w, "no recorded reply", http.StatusNotFound)
			return
		}
		rj.mu.Lock()
		rj.data.Chat[key], rj.changed = reply, true
		rj.mu.Unlock()
	}
	writeJSON(w, map[string]any{"choices": []any{map[string]any{"index": 0,
		"message": map[string]string{"role": "assistant", "content": reply}, "finish_reason": "stop"}}})
}

func (rj *recordedJudge) embeddings(w http.ResponseWriter, r *http.Request) {
	rj.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var data []any
	for i, text := range req.Input {
		key := judge.Key("embedding", req.Model, text)
		rj.mu.Lock()
		vec, ok := rj.data.Embeddings[key]
		rj.mu.Unlock()
		if !ok {
			one, _ := json.Marshal(map[string]any{"model": req.Model, "input": []string{text}})
			if vec, ok = forward(*recordEmbeddings, "/embeddings", one, func(resp []byte) ([]float32, error) {
				var er struct {
					Data []struct{ Embedding []float32 }
				}
				if err := json.Unmarshal(resp, &er); err != nil || len(er.Data) != 1 {
					return nil, io.ErrUnexpectedEOF
				}
				return er.Data[0].Embedding, nil
			}); !ok {
				rj.t.Errorf("recorded judge: no embedding for %q", text)
				http.Error(w, "no recorded embedding", http.StatusNotFound)
				return
			}
			rj.mu.Lock()
			rj.data.Embeddings[key], rj.changed = vec, true
			rj.mu.Unlock()
		}
		data = append(data, map[string]any{"index": i, "embedding": vec})
	}
	writeJSON(w, map[string]any{"data": data})
}

// forward sends body to upstream's path when recording is on and decodes
// the reply; ok is false when recording is off or the request failed.
func forward[T any](upstream, path string, body []byte, decode func([]byte) (T, error)) (out T, ok bool) {
	if upstream == "" {
		return out, false
	}
	resp, err := http.Post(strings.TrimRight(upstream, "/")+"/v1"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return out, false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return out, false
	}
	out, err = decode(data)
	return out, err == nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// expectedReport is testdata/score/e2e/expected.json: the authors'
// functions run by tools/reference/pancapscore.py on the same judge
// replies. Scores are [recall, precision, F1] as Python reprs, fractions.
type expectedReport struct {
	Images []struct {
		Image                                      string
		Tag, Location, Attribute, Relation, Global []string
		RefQuestionsForPred                        string `json:"ref_questions_for_pred"`
		PredQuestionsForRef                        string `json:"pred_questions_for_ref"`
	}
	Total struct {
		Tag, Location, Attribute, Relation, Global []string
		PancapScore                                string `json:"pancapscore"`
	}
}

func TestScoreAgainstRecordedJudge(t *testing.T) {
	rj, url := newRecordedJudge(t, filepath.Join(e2eDir, "judge.json"))
	cache := t.TempDir()
	jsonOut := filepath.Join(t.TempDir(), "report.json")
	mdOut := filepath.Join(t.TempDir(), "report.md")
	wn := filepath.Join("..", "..", "testdata", "score", "wordnet")
	if *recordJudge != "" {
		wn = wordnet.DefaultDir // new names are not in the vendored subset yet
	}
	args := []string{"score", "--pred", filepath.Join(e2eDir, "preds.jsonl"), "--ref", filepath.Join(e2eDir, "refs.json"),
		"--judge-url", url, "--embeddings-url", url + "/v1", "--wordnet-dir", wn,
		"--cache-dir", cache, "--concurrency", "3", "--json-out", jsonOut, "--md-out", mdOut, "--json"}
	out, errOut, err := run(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var rep score.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(e2eDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want expectedReport
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	check := func(where string, got score.PRF, want []string, scale float64) {
		t.Helper()
		if got.Recall != scale*num(want[0]) || got.Precision != scale*num(want[1]) || got.F1 != scale*num(want[2]) {
			t.Errorf("%s: %+v; the authors' (recall, precision, F1) %v ×%v", where, got, want, scale)
		}
	}
	if len(rep.Images) != len(want.Images) {
		t.Fatalf("%d images, want %d", len(rep.Images), len(want.Images))
	}
	for i, w := range want.Images {
		g := rep.Images[i]
		if g.Image != w.Image {
			t.Fatalf("image %d is %s, want %s", i, g.Image, w.Image)
		}
		check(w.Image+" tag", g.Tag, w.Tag, 1)
		check(w.Image+" location", g.Location, w.Location, 1)
		check(w.Image+" attribute", g.Attribute, w.Attribute, 1)
		check(w.Image+" relation", g.Relation, w.Relation, 1)
		check(w.Image+" global", g.Global, w.Global, 1)
		if g.Transcript.RefQuestionsForPred != w.RefQuestionsForPred || g.Transcript.PredQuestionsForRef != w.PredQuestionsForRef {
			t.Errorf("%s: the remapped questions differ from the authors'", w.Image)
		}
	}
	check("total tag", rep.Total.Tag, want.Total.Tag, 100)
	check("total location", rep.Total.Location, want.Total.Location, 100)
	check("total attribute", rep.Total.Attribute, want.Total.Attribute, 100)
	check("total relation", rep.Total.Relation, want.Total.Relation, 100)
	check("total global", rep.Total.Global, want.Total.Global, 100)
	if got, w := rep.Total.PancapScore, 100*num(want.Total.PancapScore); got != w {
		t.Errorf("PancapScore %v, the authors' %v", got, w)
	}
	if rep.Unscored != 0 || rep.Total.Images != 3 || rep.Settings.JudgeModel != "Qwen/Qwen2.5-14B-Instruct" {
		t.Errorf("report header %+v %+v", rep.Total, rep.Settings)
	}
	// The files hold the same report.
	if data, err := os.ReadFile(jsonOut); err != nil || !json.Valid(data) {
		t.Errorf("--json-out: %v", err)
	}
	md, err := os.ReadFile(mdOut)
	if err != nil || !strings.Contains(string(md), "## PancapScore: "+strconv.FormatFloat(rep.Total.PancapScore, 'f', 2, 64)) ||
		!strings.Contains(string(md), "| sam/sa_000033/sa_369833.jpg |") {
		t.Errorf("--md-out: %v\n%s", err, md)
	}

	// A second run is answered from the cache: nothing is sent.
	sent := rj.requests.Load()
	if sent == 0 {
		t.Fatal("the first run sent no request")
	}
	out2, errOut, err := run(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if rj.requests.Load() != sent {
		t.Errorf("the cached run sent %d requests", rj.requests.Load()-sent)
	}
	if out2 != out {
		t.Error("the cached run's report differs")
	}
	// The markdown report goes to stdout without --json.
	md2, _, err := run(t, args[:len(args)-1]...)
	if err != nil || md2 != string(md) {
		t.Errorf("markdown on stdout differs from --md-out: %v", err)
	}
}

func TestScoreErrors(t *testing.T) {
	dir := t.TempDir()
	preds := filepath.Join(dir, "p.jsonl")
	refs := filepath.Join(dir, "r.json")
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(refs, `[{"image_path": "a/b/c.jpg", "gt_response": "A dog."}]`)
	base := []string{"score", "--pred", preds, "--ref", refs, "--judge-url", "http://127.0.0.1:1", "--embeddings-url", "http://127.0.0.1:1",
		"--wordnet-dir", filepath.Join("..", "..", "testdata", "score", "wordnet"), "--no-cache", "--retries", "0"}
	for _, c := range []struct{ preds, extra, want string }{
		{`{"image": "x/a/b/c.jpg", "caption": "A dog <box>[[1, 2, 3, 4]]</box>."}`, "", "need width and height"},
		{`{"image": "x/y/z.jpg", "caption": "A dog."}`, "", "no reference caption for x/y/z.jpg"},
		{`{"image": "a/b/c.jpg"}`, "", "no caption"},
		{`{"image": "a/b/c.jpg", "caption": "A dog."}`, "--sampling=hot", "want greedy or authors"},
		{`{"image": "a/b/c.jpg", "caption": "A dog."}`, "--concurrency=0", "must be positive"},
		{`{"image": "a/b/c.jpg", "caption": "A dog."}`, "--wordnet-dir=" + dir, "wordnet-base"},
		{`{"image": "a/b/c.jpg", "caption": "A dog."}`, "", "connection refused"},
	} {
		write(preds, c.preds)
		args := base
		if c.extra != "" {
			args = append(append([]string{}, base...), c.extra)
		}
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: error %v, want %q", c.preds, c.extra, err, c.want)
		}
	}
}

func TestScoreReadsCaptionJSON(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	img := drawTestPNG(t)
	out, errOut, err := run(t, "caption", "--addr", addr, "--json", img)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	preds, err := score.ReadCaptions(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	refs := []score.Caption{{Image: score.ImageKey(img), Text: "A dog."}}
	items, unscored, err := score.Pair(preds, refs)
	if err != nil || unscored != 0 || len(items) != 1 {
		t.Fatalf("Pair: %v %d %v", items, unscored, err)
	}
	if strings.Contains(items[0].Pred, "<box>") || !strings.Contains(items[0].Pred, "[[") {
		t.Errorf("the prediction's boxes were not converted: %q", items[0].Pred)
	}
}

// TestRecordedJudgeRecords: with -score.record-* set, missing replies are
// fetched from the real endpoint and written to the recording.
func TestRecordedJudgeRecords(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			io.WriteString(w, `{"data": [{"index": 0, "embedding": [0.25, 0.5]}]}`)
			return
		}
		io.WriteString(w, `{"choices": [{"message": {"role": "assistant", "content": "1 | entity -->> (whole, dog)"}}]}`)
	}))
	defer upstream.Close()
	oldJ, oldE := *recordJudge, *recordEmbeddings
	*recordJudge, *recordEmbeddings = upstream.URL, upstream.URL
	defer func() { *recordJudge, *recordEmbeddings = oldJ, oldE }()
	path := filepath.Join(t.TempDir(), "judge.json")
	if err := os.WriteFile(path, []byte(`{"chat": {}, "embeddings": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := t.Run("record", func(t *testing.T) {
		_, url := newRecordedJudge(t, path)
		c := judge.NewClient(judge.Endpoint{URL: url, Model: "m"}, 1, nil)
		reply, err := (&judge.Chat{Client: c, System: "sys", MaxTokens: 5}).Complete(t.Context(), "user")
		if err != nil || reply != "1 | entity -->> (whole, dog)" {
			t.Errorf("Complete = %q, %v", reply, err)
		}
		vecs, err := (&judge.Embeddings{Client: c, Batch: 4}).Embed(t.Context(), []string{"dog", "cat"})
		if err != nil || len(vecs) != 2 || vecs[1][1] != 0.5 {
			t.Errorf("Embed = %v, %v", vecs, err)
		}
	})
	if !sub {
		return
	}
	var rec recording
	raw, _ := os.ReadFile(path)
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Chat[judge.Key("chat", "m", "sys", "user")] != "1 | entity -->> (whole, dog)" ||
		len(rec.Embeddings[judge.Key("embedding", "m", "cat")]) != 2 {
		t.Errorf("recording %s", raw)
	}
}
