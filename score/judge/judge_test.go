package judge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer answers chat requests with the user message reversed in case
// ("Hi" → "hI") and embeddings with [len(text), index]; fail makes its
// first n responses that status.
type fakeServer struct {
	fail     int32
	status   int
	requests atomic.Int32
	last     atomic.Value // the last request body
	auth     atomic.Value
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.last.Store(string(body))
	f.auth.Store(r.Header.Get("Authorization"))
	if n <= f.fail {
		http.Error(w, "busy", f.status)
		return
	}
	switch r.URL.Path {
	case "/v1/chat/completions":
		var req chatRequest
		_ = json.Unmarshal(body, &req)
		reply := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' {
				return r - 32
			}
			return r + 32*(boolInt(r >= 'A' && r <= 'Z'))
		}, req.Messages[1].Content)
		fmt.Fprintf(w, `{"choices": [{"message": {"role": "assistant", "content": %q}}]}`, reply)
	case "/v1/embeddings":
		var req embeddingRequest
		_ = json.Unmarshal(body, &req)
		var data []string
		for i := len(req.Input) - 1; i >= 0; i-- { // out of order on purpose
			data = append(data, fmt.Sprintf(`{"index": %d, "embedding": [%d, %d]}`, i, len(req.Input[i]), i))
		}
		fmt.Fprintf(w, `{"data": [%s]}`, strings.Join(data, ","))
	default:
		http.NotFound(w, r)
	}
}

func boolInt(b bool) rune {
	if b {
		return 1
	}
	return 0
}

func newTestClient(t *testing.T, f *fakeServer, base string, cache *Cache) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := NewClient(Endpoint{URL: srv.URL + base, Model: "m", APIKey: "k"}, 2, cache)
	c.Backoff = time.Millisecond
	return c
}

func TestChatCachesAndSendsSampling(t *testing.T) {
	f := &fakeServer{}
	cache := &Cache{Dir: t.TempDir()}
	chat := &Chat{Client: newTestClient(t, f, "/v1/", cache), System: "sys", Sampling: Authors, MaxTokens: 99}
	got, err := chat.Complete(t.Context(), "Hello")
	if err != nil || got != "hELLO" {
		t.Fatalf("Complete = %q, %v", got, err)
	}
	var req map[string]any
	if err := json.Unmarshal([]byte(f.last.Load().(string)), &req); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"model": "m", "max_tokens": 99.0, "temperature": 0.7, "top_p": 0.8, "top_k": 20.0, "repetition_penalty": 1.05} {
		if req[k] != want {
			t.Errorf("request %s = %v, want %v", k, req[k], want)
		}
	}
	if f.auth.Load() != "Bearer k" {
		t.Errorf("Authorization %q", f.auth.Load())
	}
	if got, err := chat.Complete(t.Context(), "Hello"); err != nil || got != "hELLO" || f.requests.Load() != 1 {
		t.Errorf("cached Complete = %q, %v after %d requests", got, err, f.requests.Load())
	}
	// Greedy is another cache entry, and sends no sampling extensions.
	chat.Sampling = Sampling{}
	if _, err := chat.Complete(t.Context(), "Hello"); err != nil || f.requests.Load() != 2 {
		t.Fatalf("greedy: %v, %d requests", err, f.requests.Load())
	}
	body := f.last.Load().(string)
	if !strings.Contains(body, `"temperature":0`) || strings.Contains(body, "top_k") || strings.Contains(body, "top_p") {
		t.Errorf("greedy request %s", body)
	}
}

func TestRetries(t *testing.T) {
	f := &fakeServer{fail: 2, status: http.StatusServiceUnavailable}
	var failures atomic.Int32
	c := newTestClient(t, f, "", nil)
	c.OnRequest = func(err error) {
		if err != nil {
			failures.Add(1)
		}
	}
	chat := &Chat{Client: c, MaxTokens: 1}
	if got, err := chat.Complete(t.Context(), "a"); err != nil || got != "A" || f.requests.Load() != 3 || failures.Load() != 2 {
		t.Errorf("Complete = %q, %v after %d requests, %d failures", got, err, f.requests.Load(), failures.Load())
	}
	// A client error is not retried; a server that keeps failing runs out of tries.
	for _, c := range []struct {
		status int
		want   int32
	}{{http.StatusBadRequest, 1}, {http.StatusTooManyRequests, 5}} {
		f := &fakeServer{fail: 100, status: c.status}
		chat := &Chat{Client: newTestClient(t, f, "", nil), MaxTokens: 1}
		_, err := chat.Complete(t.Context(), "a")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", c.status)) || f.requests.Load() != c.want {
			t.Errorf("status %d: %v after %d requests, want %d", c.status, err, f.requests.Load(), c.want)
		}
	}
}

func TestEmbeddingsBatchesAndCaches(t *testing.T) {
	f := &fakeServer{}
	cache := &Cache{Dir: t.TempDir()}
	e := &Embeddings{Client: newTestClient(t, f, "", cache), Batch: 2}
	texts := []string{"a", "bb", "ccc", "dddd", "eeeee"}
	got, err := e.Embed(t.Context(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v[0] != float32(len(texts[i])) {
			t.Errorf("embedding %d = %v", i, v)
		}
	}
	if f.requests.Load() != 3 {
		t.Errorf("%d requests for 5 texts in batches of 2", f.requests.Load())
	}
	// Cached texts are not sent again; new ones are.
	got, err = e.Embed(t.Context(), []string{"bb", "ffffff"})
	if err != nil || got[0][0] != 2 || got[1][0] != 6 || f.requests.Load() != 4 {
		t.Errorf("Embed = %v, %v after %d requests", got, err, f.requests.Load())
	}
	if body := f.last.Load().(string); !strings.Contains(body, `"input":["ffffff"]`) {
		t.Errorf("request %s", body)
	}
}

func TestBadResponses(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"choices": []}`, "no choice"},
		{`not json`, "decoding the response"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, c.body) }))
		chat := &Chat{Client: NewClient(Endpoint{URL: srv.URL}, 1, nil), MaxTokens: 1}
		chat.Retries = 0
		if _, err := chat.Complete(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.body, err)
		}
		srv.Close()
	}
	for _, c := range []struct{ body, want string }{
		{`{"data": []}`, "0 embeddings for 1 texts"},
		{`{"data": [{"index": 3, "embedding": [1]}]}`, "bad index"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, c.body) }))
		e := &Embeddings{Client: NewClient(Endpoint{URL: srv.URL}, 1, nil)}
		if _, err := e.Embed(t.Context(), []string{"x"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.body, err)
		}
		srv.Close()
	}
}

func TestCacheLayout(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	k := Key("chat", "m", "x")
	if _, ok, err := c.Get(k); ok || err != nil {
		t.Fatalf("empty cache: %v %v", ok, err)
	}
	if err := c.Put(k, []byte(`"v"`)); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(c.Dir, k[:2], k+".json")); err != nil || string(data) != `"v"` {
		t.Errorf("stored %q, %v", data, err)
	}
	if data, ok, err := c.Get(k); !ok || err != nil || string(data) != `"v"` {
		t.Errorf("Get = %q %v %v", data, ok, err)
	}
	if Key("a", "b") == Key("a\x00b") || Key("ab") == Key("a", "b") || Key("a:", "b") == Key("a", ":b") {
		t.Error("keys of different parts collide")
	}
	entries, _ := os.ReadDir(filepath.Join(c.Dir, k[:2]))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestClientWithoutNewClient(t *testing.T) {
	f := &fakeServer{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	chat := &Chat{Client: &Client{Endpoint: Endpoint{URL: srv.URL}, HTTP: srv.Client()}, MaxTokens: 1}
	if got, err := chat.Complete(t.Context(), "ok"); err != nil || got != "OK" {
		t.Errorf("Complete = %q, %v", got, err)
	}
}
