// Package judge talks to the two models PancapScore needs through the
// OpenAI-compatible HTTP API that vLLM (and most servers) speak: the judge
// LLM at /v1/chat/completions and the sentence-embedding model at
// /v1/embeddings. Requests run in parallel up to a limit, are retried on
// transport errors, 429 and 5xx, and their results are kept in a Cache, so
// a second run over the same captions sends nothing.
package judge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxResponseBytes bounds a response body.
const maxResponseBytes = 64 << 20

// Sampling is the judge's decoding. The zero value is greedy.
type Sampling struct {
	Temperature       float64
	TopP              float64 // 0: not sent
	TopK              int     // 0: not sent
	RepetitionPenalty float64 // 0: not sent
}

// Authors is the decoding of the authors' runs: transformers' generate()
// with Qwen2.5-14B-Instruct's generation_config.json (do_sample, temperature
// 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05). top_k and
// repetition_penalty are vLLM extensions of the OpenAI API.
var Authors = Sampling{Temperature: 0.7, TopP: 0.8, TopK: 20, RepetitionPenalty: 1.05}

// String names the decoding in cache keys.
func (s Sampling) String() string {
	return fmt.Sprintf("t=%g,p=%g,k=%d,rp=%g", s.Temperature, s.TopP, s.TopK, s.RepetitionPenalty)
}

// Endpoint is one OpenAI-compatible server.
type Endpoint struct {
	// URL is the server's base URL, with or without the trailing /v1
	// (http://127.0.0.1:8000 and http://127.0.0.1:8000/v1 are the same).
	URL string
	// Model is the model name the server expects.
	Model string
	// APIKey is sent as a bearer token when set.
	APIKey string
}

// Client is what both model clients share: the endpoint, the HTTP client,
// the request limit, the retry policy and the cache.
type Client struct {
	Endpoint Endpoint
	HTTP     *http.Client
	// Retries is how many times a failed request is tried again, Backoff
	// the first wait (doubled after each try).
	Retries int
	Backoff time.Duration
	Cache   *Cache
	// OnRequest, when set, is called after each request sent to the server
	// (not for cache hits), with its error.
	OnRequest func(err error)

	sem chan struct{}
}

// NewClient returns a client with at most concurrency requests in flight.
func NewClient(ep Endpoint, concurrency int, cache *Cache) *Client {
	return &Client{Endpoint: ep, HTTP: &http.Client{Timeout: 10 * time.Minute}, Retries: 4,
		Backoff: time.Second, Cache: cache, sem: make(chan struct{}, max(concurrency, 1))}
}

// url joins the base URL and an API path ("/chat/completions").
func (c *Client) url(path string) string {
	base := strings.TrimRight(c.Endpoint.URL, "/")
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	return base + path
}

// statusError is a non-2xx response.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

// retryable reports whether a failed request may succeed when sent again.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code == http.StatusTooManyRequests || se.code >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// post sends a JSON request and decodes the JSON response into out,
// retrying as the policy allows.
func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if c.sem != nil { // a Client made without NewClient has no limit
		select {
		case c.sem <- struct{}{}:
			defer func() { <-c.sem }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	wait := c.Backoff
	for try := 0; ; try++ {
		err = c.postOnce(ctx, path, body, out)
		if c.OnRequest != nil {
			c.OnRequest(err)
		}
		if err == nil || try >= c.Retries || !retryable(err) {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait *= 2
	}
	if err != nil {
		return fmt.Errorf("judge: POST %s: %w", c.url(path), err)
	}
	return nil
}

func (c *Client) postOnce(ctx context.Context, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Endpoint.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.Endpoint.APIKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("response over %d bytes", maxResponseBytes)
	}
	if resp.StatusCode/100 != 2 {
		return &statusError{resp.StatusCode, strings.TrimSpace(string(data[:min(len(data), 512)]))}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the response: %w", err)
	}
	return nil
}

// Chat is the judge: one system and one user message per request.
type Chat struct {
	*Client
	System    string
	Sampling  Sampling
	MaxTokens int
}

// chatRequest is the body of /v1/chat/completions.
type chatRequest struct {
	Model             string        `json:"model"`
	Messages          []chatMessage `json:"messages"`
	MaxTokens         int           `json:"max_tokens"`
	Temperature       float64       `json:"temperature"`
	TopP              float64       `json:"top_p,omitempty"`
	TopK              int           `json:"top_k,omitempty"`
	RepetitionPenalty float64       `json:"repetition_penalty,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatResponse struct {
	Choices []struct {
		Message chatMessage `json:"message"`
	} `json:"choices"`
}

// Complete returns the judge's reply to prompt, from the cache when this
// model, decoding and prompt were asked before.
func (c *Chat) Complete(ctx context.Context, prompt string) (string, error) {
	key := Key("chat", c.Endpoint.Model, c.Sampling.String(), strconv.Itoa(c.MaxTokens), c.System, prompt)
	if data, ok, err := c.Cache.Get(key); err != nil || ok {
		var s string
		if err == nil {
			err = json.Unmarshal(data, &s)
		}
		return s, err
	}
	req := chatRequest{Model: c.Endpoint.Model, MaxTokens: c.MaxTokens,
		Messages:    []chatMessage{{"system", c.System}, {"user", prompt}},
		Temperature: c.Sampling.Temperature, TopP: c.Sampling.TopP, TopK: c.Sampling.TopK,
		RepetitionPenalty: c.Sampling.RepetitionPenalty}
	var resp chatResponse
	if err := c.post(ctx, "/chat/completions", req, &resp); err != nil {
		return "", err
	}
	if len(resp.Choices) == 0 {
		return "", errors.New("judge: the chat response has no choice")
	}
	reply := resp.Choices[0].Message.Content
	data, _ := json.Marshal(reply)
	return reply, c.Cache.Put(key, data)
}

// Embeddings is the sentence-embedding model.
type Embeddings struct {
	*Client
	// Batch is the most texts sent in one request.
	Batch int
}

type embeddingRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

type embeddingResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// Embed returns one vector per text, each text's from the cache when it
// was embedded before by this model.
func (e *Embeddings) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var todo []int // indices of texts to send
	for i, t := range texts {
		data, ok, err := e.Cache.Get(Key("embedding", e.Endpoint.Model, t))
		if err != nil {
			return nil, err
		}
		if ok {
			if err := json.Unmarshal(data, &out[i]); err != nil {
				return nil, fmt.Errorf("judge: cache: %w", err)
			}
			continue
		}
		todo = append(todo, i)
	}
	for len(todo) > 0 {
		n := min(len(todo), max(e.Batch, 1))
		batch := todo[:n]
		todo = todo[n:]
		req := embeddingRequest{Model: e.Endpoint.Model}
		for _, i := range batch {
			req.Input = append(req.Input, texts[i])
		}
		var resp embeddingResponse
		if err := e.post(ctx, "/embeddings", req, &resp); err != nil {
			return nil, err
		}
		if len(resp.Data) != len(batch) {
			return nil, fmt.Errorf("judge: %d embeddings for %d texts", len(resp.Data), len(batch))
		}
		for _, d := range resp.Data {
			if d.Index < 0 || d.Index >= len(batch) || len(d.Embedding) == 0 {
				return nil, fmt.Errorf("judge: embedding response: bad index %d or empty vector", d.Index)
			}
			i := batch[d.Index]
			out[i] = d.Embedding
			data, _ := json.Marshal(d.Embedding)
			if err := e.Cache.Put(Key("embedding", e.Endpoint.Model, texts[i]), data); err != nil {
				return nil, err
			}
		}
	}
	for i, v := range out {
		if len(v) != len(out[0]) {
			return nil, fmt.Errorf("judge: embedding %d has %d dimensions, not %d", i, len(v), len(out[0]))
		}
	}
	return out, nil
}
