package openai

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/internal/testsupport"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
	"github.com/pancap-serve/pancap/server"
)

func TestMain(m *testing.M) {
	// The CPU kernels' worker pool (TestRealBatcher) lives for the process.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/pancap-serve/pancap/kernels/cpu/linalg.(*parker).wait"))
}

func TestChatChainNonStreaming(t *testing.T) {
	h := start(t, server.Config{}, Config{}, readyBackend())
	resp := h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, ""),
		"max_tokens": 9, "temperature": 0.5, "seed": -1, "stop": "END", "n": 1, "logprobs": false}, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
				Pancap  ext    `json:"pancap"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	decode(t, resp, &got)
	if !strings.HasPrefix(got.ID, "chatcmpl-") || got.Object != "chat.completion" || len(got.Choices) != 1 {
		t.Fatalf("envelope: %+v", got)
	}
	c := got.Choices[0]
	if c.Message.Role != "assistant" || c.Message.Content != "scaption" || c.FinishReason != "stop" {
		t.Errorf("message %+v, finish %q: want the caption", c.Message, c.FinishReason)
	}
	p := c.Message.Pancap
	if len(p.Stages) != 4 || p.Stages[1].StageName != "tag" || p.Stages[1].Text != "stag" || p.ImageWidth != 640 {
		t.Errorf("pancap extension: %+v", p)
	}
	if len(p.Entities) != 1 || p.Entities[0].Tag != "dog" || p.Entities[0].Box != [4]int{100, 200, 500, 900} || p.Entities[0].BoxPx[3] != 576 {
		t.Errorf("entities: %+v", p.Entities)
	}
	if got.Usage.PromptTokens != 160 || got.Usage.CompletionTokens != 8 || got.Usage.TotalTokens != 168 || got.Usage.PromptTokensDetails.CachedTokens != 120 {
		t.Errorf("usage %+v: want the four stages' sums", got.Usage)
	}
	req := h.b.lastChain.Load()
	if req.MaxNewTokens != [4]int{9, 9, 9, 9} || req.Sampling.Temperature != 0.5 || req.Sampling.Seed != 1<<64-1 ||
		len(req.Stop) != 1 || req.Stop[0] != "END" || len(req.Image) == 0 {
		t.Errorf("batcher request %+v", req)
	}
}

func TestChatChainStreaming(t *testing.T) {
	h := start(t, server.Config{}, Config{}, readyBackend())
	resp := h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, ""),
		"stream": true, "stream_options": map[string]any{"include_usage": true}, "pancap": map[string]any{"stages": 2}}, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs, done := events(t, resp.Body)
	if !done {
		t.Fatal("no [DONE]")
	}
	var content strings.Builder
	var kinds []string
	for i, ev := range evs {
		if ev["object"] != "chat.completion.chunk" {
			t.Fatalf("event %d: %v", i, ev)
		}
		ch := ev["choices"].([]any)
		if len(ch) == 1 {
			d := ch[0].(map[string]any)["delta"].(map[string]any)
			if s, ok := d["content"].(string); ok {
				content.WriteString(s)
			}
			if i == 0 && d["role"] != "assistant" {
				t.Errorf("first chunk %v: want the role", ev)
			}
		}
		if p, ok := ev["pancap"].(map[string]any); ok {
			kinds = append(kinds, fmt.Sprintf("%v %v", p["event"], p["stage"]))
		}
	}
	if content.String() != "stag" {
		t.Errorf("content %q: want stage 2's text only", content.String())
	}
	want := "queued <nil>,image_encoded <nil>,stage_started 1,delta 1,delta 1,stage_finished 1,stage_started 2,stage_finished 2,done <nil>"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("pancap events\n got %s\nwant %s", got, want)
	}
	last := evs[len(evs)-1]
	if u := last["usage"].(map[string]any); u["completion_tokens"] != 4.0 || len(last["choices"].([]any)) != 0 {
		t.Errorf("usage chunk %v", last)
	}
	fin := evs[len(evs)-2]["choices"].([]any)[0].(map[string]any)
	if fin["finish_reason"] != "stop" {
		t.Errorf("final chunk %v", fin)
	}
}

func TestChatGenerate(t *testing.T) {
	h := start(t, server.Config{}, Config{}, readyBackend())
	body := map[string]any{"model": ModelID, "messages": imageMessages(t, "What is here?"), "max_completion_tokens": 5,
		"top_p": 0.9, "top_k": -1, "ignore_eos": true}
	resp := h.post(t, "/v1/chat/completions", body, "")
	var got struct {
		Choices []struct {
			Message      map[string]any `json:"message"`
			FinishReason string         `json:"finish_reason"`
		} `json:"choices"`
	}
	decode(t, resp, &got)
	if m := got.Choices[0].Message; m["content"] != "echo: What is here?" || m["pancap"] != nil || got.Choices[0].FinishReason != "length" {
		t.Errorf("choice %+v", got.Choices[0])
	}
	req := h.b.lastGen.Load()
	if req.Prompt != "What is here?" || req.MaxNewTokens != 5 || req.Sampling.TopP != 0.9 || req.Sampling.TopK != 0 || !req.IgnoreEOS || len(req.Image) == 0 {
		t.Errorf("batcher request %+v", req)
	}

	body["stream"] = true
	resp = h.post(t, "/v1/chat/completions", body, "")
	evs, done := events(t, resp.Body)
	var content strings.Builder
	for _, ev := range evs {
		if ev["pancap"] != nil {
			t.Errorf("a generation's chunk carries pancap: %v", ev)
		}
		if ch := ev["choices"].([]any); len(ch) == 1 {
			if s, ok := ch[0].(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
				content.WriteString(s)
			}
		}
	}
	if !done || content.String() != "echo: What is here?" {
		t.Errorf("stream: done %v, content %q", done, content.String())
	}
}

// TestChatErrors checks the status, the type and the param of refusals.
func TestChatErrors(t *testing.T) {
	h := start(t, server.Config{MaxRecvMsgBytes: 4096, Limits: batcher.Limits{MaxStopStrings: 2}}, Config{}, readyBackend())
	msgs := imageMessages(t, "")
	req := func(extra map[string]any) map[string]any {
		m := map[string]any{"model": ModelID, "messages": msgs}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name   string
		body   any
		status int
		param  string
	}{
		{"unknown field", req(map[string]any{"best_of": 2}), 400, "best_of"},
		{"n", req(map[string]any{"n": 2}), 400, "n"},
		{"logprobs", req(map[string]any{"logprobs": true}), 400, "logprobs"},
		{"tools", req(map[string]any{"tools": []any{map[string]any{"type": "function"}}}), 400, "tools"},
		{"json mode", req(map[string]any{"response_format": map[string]any{"type": "json_object"}}), 400, "response_format"},
		{"penalty", req(map[string]any{"presence_penalty": 0.5}), 400, "presence_penalty"},
		{"wrong type", req(map[string]any{"temperature": "hot"}), 400, "temperature"},
		{"top_p over 1 (the server's validator)", req(map[string]any{"top_p": 2}), 400, "top_p"},
		{"negative temperature", req(map[string]any{"temperature": -1}), 400, "temperature"},
		{"too many stops", req(map[string]any{"stop": []string{"a", "b", "c"}}), 400, "stop"},
		{"max_tokens 0", req(map[string]any{"max_tokens": 0}), 400, "max_tokens"},
		{"max_tokens over the limit", req(map[string]any{"max_tokens": 1 << 20}), 400, "max_tokens"},
		{"two limits that differ", req(map[string]any{"max_tokens": 3, "max_completion_tokens": 4}), 400, "max_tokens"},
		{"stages", req(map[string]any{"pancap": map[string]any{"stages": 7}}), 400, "pancap.stages"},
		{"usage without stream", req(map[string]any{"stream_options": map[string]any{"include_usage": true}}), 400, "stream_options"},
		{"model", req(map[string]any{"model": "gpt-4o"}), 404, "model"},
		{"no model", map[string]any{"messages": msgs}, 400, "model"},
		{"no messages", map[string]any{"model": ModelID}, 400, "messages"},
		{"two messages", req(map[string]any{"messages": []any{msgs[0], msgs[0]}}), 400, "messages"},
		{"system role", req(map[string]any{"messages": []any{map[string]any{"role": "system", "content": "hi"}}}), 400, "messages[0].role"},
		{"empty", req(map[string]any{"messages": []any{map[string]any{"role": "user", "content": " "}}}), 400, "messages"},
		{"audio part", req(map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "input_audio"}}}}}), 400, "messages[0].content[0].type"},
		{"bad data URI", req(map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:text/plain;base64,aGk="}}}}}}), 400, "messages[0].content[0].image_url"},
		{"remote URL off", req(map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "image_url", "image_url": map[string]any{"url": "https://169.254.169.254/latest"}}}}}}), 400, "messages[0].content[0].image_url"},
		{"not JSON", "{", 400, ""},
		{"too large", req(map[string]any{"user": strings.Repeat("x", 5000)}), 413, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := h.post(t, "/v1/chat/completions", c.body, "")
			var e errorJSON
			decode(t, resp, &e)
			if resp.StatusCode != c.status || e.Error.Message == "" || e.Error.Type != errorType(c.status) {
				t.Errorf("status %d (want %d), error %+v", resp.StatusCode, c.status, e.Error)
			}
			if got := deref(e.Error.Param); got != c.param {
				t.Errorf("param %q, want %q (%s)", got, c.param, e.Error.Message)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestBackendErrorsMapped checks the gRPC code → HTTP status table on the
// errors the batcher returns, before and during a stream.
func TestBackendErrorsMapped(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
	}{
		{batcher.ErrQueueFull, http.StatusTooManyRequests},
		{batcher.ErrNotServing, http.StatusServiceUnavailable},
		{batcher.ErrInvalidImage, http.StatusBadRequest},
		{batcher.ErrPromptTooLong, http.StatusBadRequest},
		{batcher.ErrInternal, http.StatusInternalServerError},
	} {
		b := readyBackend()
		b.submitErr = fmt.Errorf("%w: scripted", c.err)
		h := start(t, server.Config{}, Config{}, b)
		for _, stream := range []bool{false, true} {
			resp := h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, ""), "stream": stream}, "")
			var e errorJSON
			decode(t, resp, &e)
			if resp.StatusCode != c.status || !strings.Contains(e.Error.Message, "scripted") {
				t.Errorf("%v (stream %v): status %d, want %d; %+v", c.err, stream, resp.StatusCode, c.status, e.Error)
			}
		}
	}
	b := readyBackend()
	b.ready.Store(false)
	h := start(t, server.Config{}, Config{}, b)
	if resp := h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, "")}, ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("not ready: status %d, want 503", resp.StatusCode)
	}
}

// TestErrorMidStream checks that a failure after the first event ends the
// stream with an error event in OpenAI's shape, without [DONE].
func TestErrorMidStream(t *testing.T) {
	b := readyBackend()
	b.doneErr = fmt.Errorf("%w: scripted", batcher.ErrNotServing)
	h := start(t, server.Config{}, Config{}, b)
	resp := h.post(t, "/v1/chat/completions", map[string]any{"model": ModelID, "messages": imageMessages(t, "hi"), "stream": true}, "")
	evs, done := events(t, resp.Body)
	if resp.StatusCode != http.StatusOK || done || len(evs) < 2 {
		t.Fatalf("status %d, [DONE] %v, %d events", resp.StatusCode, done, len(evs))
	}
	e, ok := evs[len(evs)-1]["error"].(map[string]any)
	if !ok || e["type"] != "server_error" || e["code"] != "unavailable" || !strings.Contains(fmt.Sprint(e["message"]), "scripted") {
		t.Errorf("last event %v: want the error", evs[len(evs)-1])
	}
}

func TestAuthAndRateLimit(t *testing.T) {
	var logs testsupport.SyncBuffer
	h := start(t, server.Config{AuthToken: "s3cret", RateLimit: 1, RateBurst: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		Config{}, readyBackend())
	body := map[string]any{"model": ModelID, "messages": imageMessages(t, "")}
	for _, tok := range []string{"", "wrong"} {
		resp := h.post(t, "/v1/chat/completions", body, tok)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("token %q: status %d, want 401", tok, resp.StatusCode)
		}
	}
	get := func(path, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, h.http.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := h.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/v1/models", ""); st != http.StatusUnauthorized {
		t.Errorf("models without a token: %d", st)
	}
	if st := get("/health", ""); st != http.StatusOK {
		t.Errorf("health without a token: %d (health is open, as gRPC's)", st)
	}
	var statuses []int
	for range 3 {
		statuses = append(statuses, h.post(t, "/v1/chat/completions", body, "s3cret").StatusCode)
	}
	if fmt.Sprint(statuses) != "[200 200 429]" { // refused calls (401) take no token
		t.Errorf("statuses %v, want the burst then 429", statuses)
	}
	// One bucket for both transports: HTTP took the burst, gRPC is refused.
	conn, err := grpc.NewClient(h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	if _, err := pb.NewCaptionerClient(conn).GetModelInfo(ctx, &pb.GetModelInfoRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC after HTTP took the burst: %v, want RESOURCE_EXHAUSTED", err)
	}
	for _, want := range []string{"level=WARN msg=\"finished http request\" method=POST path=/v1/chat/completions status=429",
		"level=INFO msg=\"finished http request\" method=POST path=/v1/chat/completions status=401"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line %q in\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the token was logged")
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	b := readyBackend()
	b.ready.Store(false)
	h := start(t, server.Config{}, Config{Metrics: true}, b)
	get := func(path string) (int, string) {
		resp, err := h.http.Client().Get(h.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if st, _ := get("/health"); st != http.StatusServiceUnavailable {
		t.Errorf("health while loading: %d", st)
	}
	b.ready.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for st, _ := get("/health"); st != http.StatusOK; st, _ = get("/health") {
		if time.Now().After(deadline) {
			t.Fatalf("health never 200 once ready: %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, body := get("/v1/models"); st != 200 || !strings.Contains(body, `"id":"pancapchain"`) || !strings.Contains(body, `"object":"list"`) {
		t.Errorf("models: %d %s", st, body)
	}
	if st, _ := get("/v1/models/pancapchain"); st != 200 {
		t.Errorf("one model: %d", st)
	}
	if st, body := get("/v1/models/other"); st != 404 || !strings.Contains(body, "model_not_found") {
		t.Errorf("unknown model: %d %s", st, body)
	}
	if st, body := get("/metrics"); st != 200 || !strings.Contains(body, `pancap_http_requests_total{code="200",handler="models"} 1`) {
		t.Errorf("metrics: %d\n%s", st, body)
	}
	if st, body := get("/v2/nothing"); st != 404 || !strings.Contains(body, `"type":"invalid_request_error"`) {
		t.Errorf("unknown route: %d %s", st, body)
	}
	h.srv.Shutdown(context.Background())
	if st, _ := get("/health"); st != http.StatusServiceUnavailable {
		t.Errorf("health while draining: %d, want 503", st)
	}
}

// TestClientDisconnectCancels checks that a client that goes away mid-stream
// cancels the backend's work.
func TestClientDisconnectCancels(t *testing.T) {
	b := readyBackend()
	b.block = true
	h := start(t, server.Config{}, Config{}, b)
	ctx, cancel := context.WithCancel(context.Background())
	body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":%q}}]}]}`, ModelID, pngDataURI(t))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.http.URL+"/v1/chat/completions", strings.NewReader(body))
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil || !strings.HasPrefix(string(buf), "data: ") {
		t.Fatalf("first event: %q %v", buf, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-b.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was not cancelled when the client went away")
	}
}
