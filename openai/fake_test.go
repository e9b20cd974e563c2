package openai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/server"
)

// fakeBackend is a scripted server.Backend: a chain of Stages stages with
// two deltas each, a generation echoing the prompt, or what fail/block say.
type fakeBackend struct {
	ready     atomic.Bool
	submitErr error         // returned by Submit
	doneErr   error         // ends the request after its events instead of the result
	block     bool          // emit the first event, then wait for the cancellation
	cancelled chan struct{} // closed when a blocked request is cancelled
	lastChain atomic.Pointer[batcher.ChainRequest]
	lastGen   atomic.Pointer[batcher.GenerateRequest]
	wg        sync.WaitGroup
}

var testEntity = chain.Entity{Tag: "dog", Box: chain.Box{100, 200, 500, 900}, Pixel: chain.PixelBox{64, 128, 320, 576}, Stage: chain.Tag}

func (b *fakeBackend) run(ctx context.Context, events []batcher.Event, res *batcher.Result) <-chan batcher.Event {
	ch := make(chan batcher.Event)
	b.wg.Go(func() {
		defer close(ch)
		emit := func(ev batcher.Event) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		if b.block {
			emit(events[0])
			<-ctx.Done()
			close(b.cancelled)
			ch <- batcher.Event{Kind: batcher.EventDone, Err: ctx.Err()}
			return
		}
		for _, ev := range events {
			if !emit(ev) {
				ch <- batcher.Event{Kind: batcher.EventDone, Err: ctx.Err()}
				return
			}
		}
		if b.doneErr != nil {
			ch <- batcher.Event{Kind: batcher.EventDone, Err: b.doneErr}
			return
		}
		ch <- batcher.Event{Kind: batcher.EventDone, Result: res}
	})
	return ch
}

func (b *fakeBackend) SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error) {
	if b.submitErr != nil {
		return nil, b.submitErr
	}
	b.lastChain.Store(&req)
	n := chain.Stage(req.Stages)
	if n == 0 {
		n = chain.Caption
	}
	events := []batcher.Event{{Kind: batcher.EventQueued, Position: 2}, {Kind: batcher.EventImageEncoded}}
	res := &batcher.Result{Width: 640, Height: 480}
	for st := chain.Localize; st <= n; st++ {
		u := batcher.Usage{PromptTokens: 40, CachedTokens: 30, GeneratedTokens: 2}
		text := "s" + st.String()
		events = append(events,
			batcher.Event{Kind: batcher.EventStageStarted, Stage: st, Usage: u},
			batcher.Event{Kind: batcher.EventDelta, Stage: st, Text: text[:2]},
			batcher.Event{Kind: batcher.EventDelta, Stage: st, Text: text[2:]},
			batcher.Event{Kind: batcher.EventStageFinished, Stage: st, Text: text, Entities: []chain.Entity{testEntity}, Usage: u})
		res.Stages = append(res.Stages, batcher.StageResult{Stage: st, Text: text, Usage: u, Finish: "eos", Entities: []chain.Entity{testEntity}})
	}
	res.Caption = res.Stages[len(res.Stages)-1].Text
	res.Entities = []chain.Entity{testEntity}
	return b.run(ctx, events, res), nil
}

func (b *fakeBackend) SubmitGenerate(ctx context.Context, req batcher.GenerateRequest) (<-chan batcher.Event, error) {
	if b.submitErr != nil {
		return nil, b.submitErr
	}
	b.lastGen.Store(&req)
	u := batcher.Usage{PromptTokens: 7, GeneratedTokens: 1}
	events := []batcher.Event{{Kind: batcher.EventStageStarted, Usage: u}, {Kind: batcher.EventDelta, Text: "echo: "}, {Kind: batcher.EventDelta, Text: req.Prompt}}
	res := &batcher.Result{Stages: []batcher.StageResult{{Text: "echo: " + req.Prompt, Usage: u, Finish: "length"}}}
	return b.run(ctx, events, res), nil
}

func (b *fakeBackend) Spec() engine.Spec {
	return engine.Spec{Name: "fake", MaxContext: 4096, KVBlockSize: 16, KVBlocks: 64}
}

func (b *fakeBackend) Ready() bool { return b.ready.Load() }

// harness is an API over a real server.Server over a fake backend.
type harness struct {
	srv      *server.Server
	grpcAddr string // where srv serves gRPC
	http     *httptest.Server
	b        *fakeBackend
}

// start serves the API for cfg over b (ready unless told otherwise).
func start(t *testing.T, scfg server.Config, cfg Config, b *fakeBackend) *harness {
	t.Helper()
	if scfg.Logger == nil {
		scfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.New(scfg, b)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis) // starts the readiness watcher behind Serving
	api, err := New(cfg, srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		b.wg.Wait()
	})
	return &harness{srv: srv, grpcAddr: lis.Addr().String(), http: httptestServer(t, api), b: b}
}

// httptestServer serves h until the test ends.
func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// readyBackend is a ready fake.
func readyBackend() *fakeBackend {
	b := &fakeBackend{cancelled: make(chan struct{})}
	b.ready.Store(true)
	return b
}

// post sends body (a JSON value or a string) to path with the token tok
// ("" for none) and returns the response.
func (h *harness) post(t *testing.T, path string, body any, tok string) *http.Response {
	t.Helper()
	raw, ok := body.(string)
	if !ok {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(b)
	}
	req, err := http.NewRequest(http.MethodPost, h.http.URL+path, strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// decode reads a JSON response body into v.
func decode(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// events reads an SSE body: the JSON of every data line but the final
// [DONE], and whether [DONE] came.
func events(t *testing.T, r io.Reader) ([]map[string]any, bool) {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if data == "[DONE]" {
			if sc.Scan() && sc.Text() != "" || sc.Scan() {
				t.Fatalf("data after [DONE]: %q", sc.Text())
			}
			return out, true
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		out = append(out, m)
	}
	return out, false
}

// pngDataURI is a small PNG as a data: URI.
func pngDataURI(t *testing.T) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngBytes(t, 8, 6))
}

// pngBytes encodes a w×h PNG.
func pngBytes(t testing.TB, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(40 * x), uint8(30 * y), 90, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageMessages is a user message with an image and, when text is not
// empty, a text part.
func imageMessages(t *testing.T, text string) []any {
	parts := []any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": pngDataURI(t)}}}
	if text != "" {
		parts = append(parts, map[string]any{"type": "text", "text": text})
	}
	return []any{map[string]any{"role": "user", "content": parts}}
}
