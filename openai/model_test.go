package openai

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/server"
)

// TestRealBatcher runs the API over a real batcher and the random-weight
// tiny preset: a streamed chain and a prompt, token counts as asked.
func TestRealBatcher(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a model")
	}
	m, _, err := model.Open(context.Background(), "../testdata/checkpoints/tiny/llava", model.Options{KVBlocks: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := batcher.New(m, batcher.Config{ChainReuse: true})
	b.Start()
	defer b.Shutdown(context.Background())
	srv, err := server.New(server.Config{}, b)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	api, err := New(Config{}, srv)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, http: httptestServer(t, api)}

	resp := h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, ""),
		"max_tokens": 3, "ignore_eos": true, "stream": true, "stream_options": map[string]any{"include_usage": true}}, "")
	evs, done := events(t, resp.Body)
	if !done || resp.StatusCode != 200 {
		t.Fatalf("status %d, done %v", resp.StatusCode, done)
	}
	finished := 0
	for _, ev := range evs {
		if p, ok := ev["pancap"].(map[string]any); ok && p["event"] == "stage_finished" {
			finished++
		}
	}
	u := evs[len(evs)-1]["usage"].(map[string]any)
	if finished != 4 || u["completion_tokens"] != 12.0 {
		t.Errorf("%d stages finished, usage %v: want 4 stages of 3 tokens", finished, u)
	}

	resp = h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, "Describe it."),
		"max_tokens": 5, "ignore_eos": true}, "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"completion_tokens":5`) {
		t.Errorf("generate: %d %s", resp.StatusCode, body)
	}
}
