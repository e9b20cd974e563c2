package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// ModelID is the one model this API serves, as GET /v1/models lists it.
const ModelID = "pancapchain"

// chatRequest is a parsed POST /v1/chat/completions body.
type chatRequest struct {
	model      string
	text       string // the user's text parts, joined by "\n"; "" runs the chain
	textParam  string // where the text came from, e.g. "messages[0].content"
	image      []byte // decoded from a data: URI
	imageURL   string // a remote URL to fetch (only with an allow-list)
	imageParam string // e.g. "messages[0].content[1].image_url"
	stream     bool
	options    struct {
		IncludeUsage bool `json:"include_usage"` // stream a usage chunk before [DONE]
	} // stream_options
	maxTokens int32  // 0: the default
	maxParam  string // max_tokens or max_completion_tokens
	sampling  pb.SamplingParams
	stop      []string
	ignoreEOS bool
	ext       struct {
		Stages int32 `json:"stages"` // chain: run stages 1..Stages; 0: all
	} // the "pancap" extension object
}

// chain reports whether the request runs PancapChain (no text) rather than
// one free-form prompt.
func (r *chatRequest) chain() bool { return r.text == "" }

// fieldParser decodes one top-level field into r.
type fieldParser func(r *chatRequest, name string, raw json.RawMessage) error

// fields are the top-level fields a request may carry. OpenAI's fields that
// would change the answer in ways this server does not implement are only
// accepted at their default values (harmless); any other field is a 400
// naming it.
var fields = map[string]fieldParser{
	"model":                 parseModel,
	"messages":              parseMessages,
	"stream":                into(func(r *chatRequest) any { return &r.stream }),
	"stream_options":        into(func(r *chatRequest) any { return &r.options }),
	"temperature":           parseFloat32(func(r *chatRequest) *float32 { return &r.sampling.Temperature }),
	"top_p":                 parseFloat32(func(r *chatRequest) *float32 { return &r.sampling.TopP }),
	"top_k":                 parseTopK,
	"seed":                  parseSeed,
	"max_tokens":            parseMaxTokens,
	"max_completion_tokens": parseMaxTokens,
	"stop":                  parseStop,
	"ignore_eos":            into(func(r *chatRequest) any { return &r.ignoreEOS }),
	"pancap":                into(func(r *chatRequest) any { return &r.ext }),

	"n":                   onlyDefault(`1`),
	"logprobs":            onlyDefault(`false`),
	"top_logprobs":        onlyDefault(`0`),
	"presence_penalty":    onlyDefault(`0`),
	"frequency_penalty":   onlyDefault(`0`),
	"logit_bias":          onlyDefault(`{}`),
	"tools":               onlyDefault(`[]`),
	"functions":           onlyDefault(`[]`),
	"tool_choice":         onlyDefault(`"none"`, `"auto"`),
	"function_call":       onlyDefault(`"none"`, `"auto"`),
	"parallel_tool_calls": onlyDefault(`true`, `false`),
	"response_format":     onlyDefault(`{"type":"text"}`),
	"modalities":          onlyDefault(`["text"]`),
	"user":                ignored,
	"metadata":            ignored,
	"store":               ignored,
	"service_tier":        ignored,
	"prompt_cache_key":    ignored,
	"safety_identifier":   ignored,
}

// parseChat decodes and checks a request body of at most limit bytes
// (larger: 413). Only the shape and OpenAI's own rules are checked here;
// the server's limits are Server.Validate's.
func parseChat(body io.Reader, limit int64) (*chatRequest, *apiError) {
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(len(data)) > limit:
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
			message: fmt.Sprintf("the request body exceeds %d bytes (--max-request-bytes)", limit)}
	case err != nil:
		return nil, &apiError{status: http.StatusBadRequest, message: "reading the request body: " + err.Error()}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_json",
			message: "the body must be a JSON object: " + jsonErr(err)}
	}
	r := &chatRequest{}
	for _, name := range slices.Sorted(maps.Keys(top)) {
		parse, ok := fields[name]
		if !ok {
			return nil, &apiError{status: http.StatusBadRequest, param: name, code: "unsupported_parameter",
				message: fmt.Sprintf("%s: this server does not support the parameter %q", name, name)}
		}
		if isNull(top[name]) {
			continue
		}
		if err := parse(r, name, top[name]); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				return nil, ae
			}
			return nil, badParam(name, "%s", jsonErr(err))
		}
	}
	switch {
	case r.model == "":
		return nil, badParam("model", "required")
	case r.textParam == "" && r.imageParam == "":
		return nil, badParam("messages", "required: one user message with an image, text, or both")
	case r.text == "" && r.image == nil && r.imageURL == "":
		return nil, badParam("messages", "needs an image (a chain run) or text (one prompt)")
	case r.options.IncludeUsage && !r.stream:
		return nil, badParam("stream_options", "only allowed when stream is true")
	case r.ext.Stages != 0 && !r.chain():
		return nil, badParam("pancap.stages", "only applies to a chain run (an image and no text)")
	}
	return r, nil
}

// jsonErr describes a JSON decoding error without Go type names.
func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return "got null"
	case errors.As(err, &te):
		return "expected " + jsonType(te.Type.Kind().String()) + ", got " + te.Value
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err.Error()
}

// jsonType names a Go kind as a JSON type.
func jsonType(kind string) string {
	switch {
	case kind == "bool":
		return "a boolean"
	case kind == "string":
		return "a string"
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "slice":
		return "an array"
	}
	return "an object"
}

// isNull reports whether raw is the JSON null (a field's default).
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// into decodes the field into the value ptr returns.
func into(ptr func(*chatRequest) any) fieldParser {
	return func(r *chatRequest, _ string, raw json.RawMessage) error { return strictUnmarshal(raw, ptr(r)) }
}

// strictUnmarshal decodes raw into v, refusing unknown object fields.
func strictUnmarshal(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// onlyDefault accepts the field only at one of the given JSON values.
func onlyDefault(values ...string) fieldParser {
	return func(_ *chatRequest, name string, raw json.RawMessage) error {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) == nil && slices.Contains(values, buf.String()) {
			return nil
		}
		return badParam(name, "this server supports only %s (the default)", strings.Join(values, " or "))
	}
}

// ignored accepts any value of a field that does not change the answer.
func ignored(*chatRequest, string, json.RawMessage) error { return nil }

func parseModel(r *chatRequest, name string, raw json.RawMessage) error {
	if err := json.Unmarshal(raw, &r.model); err != nil {
		return err
	}
	if r.model != ModelID {
		return &apiError{status: http.StatusNotFound, param: name, code: "model_not_found",
			message: fmt.Sprintf("the model %q does not exist; GET /v1/models lists %q", r.model, ModelID)}
	}
	return nil
}

func parseFloat32(ptr func(*chatRequest) *float32) fieldParser {
	return func(r *chatRequest, name string, raw json.RawMessage) error {
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		if math.Abs(v) > math.MaxFloat32 {
			return badParam(name, "out of range: %v", v)
		}
		*ptr(r) = float32(v)
		return nil
	}
}

// parseTopK takes vLLM's top_k; -1 (vLLM's "off") is 0.
func parseTopK(r *chatRequest, name string, raw json.RawMessage) error {
	var k int32
	if err := json.Unmarshal(raw, &k); err != nil {
		return err
	}
	if k == -1 {
		k = 0
	}
	r.sampling.TopK = k
	return nil
}

// parseSeed takes OpenAI's signed seed; a negative one keeps its bits.
func parseSeed(r *chatRequest, _ string, raw json.RawMessage) error {
	var s int64
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	r.sampling.Seed = uint64(s)
	return nil
}

// parseMaxTokens takes max_tokens or max_completion_tokens (both: equal).
func parseMaxTokens(r *chatRequest, name string, raw json.RawMessage) error {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return err
	}
	switch {
	case n < 1 || n > math.MaxInt32:
		return badParam(name, "must be at least 1, got %d", n)
	case r.maxParam != "" && int64(r.maxTokens) != n:
		return badParam(name, "differs from %s; give one of them", r.maxParam)
	}
	r.maxTokens, r.maxParam = int32(n), name
	return nil
}

// parseStop takes a string or an array of strings.
func parseStop(r *chatRequest, _ string, raw json.RawMessage) error {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		r.stop = []string{one}
		return nil
	}
	return json.Unmarshal(raw, &r.stop)
}

// message is one entry of "messages".
type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentPart is one entry of an array content.
type contentPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL *struct {
		URL    string `json:"url"`
		Detail string `json:"detail"` // accepted and ignored: the model sees a fixed resolution
	} `json:"image_url"`
}

// parseMessages takes exactly one user message: the model has a fixed
// system prompt and answers one turn.
func parseMessages(r *chatRequest, name string, raw json.RawMessage) error {
	var msgs []message
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return err
	}
	if len(msgs) != 1 {
		return badParam(name, "must hold exactly one message (one user turn; the system prompt is the model's own), got %d", len(msgs))
	}
	m := msgs[0]
	param := name + "[0]"
	if m.Role != "user" {
		return badParam(param+".role", `must be "user", got %q`, m.Role)
	}
	param += ".content"
	if isNull(m.Content) || len(m.Content) == 0 {
		return badParam(param, "required")
	}
	var text string
	if json.Unmarshal(m.Content, &text) == nil {
		r.text, r.textParam = strings.TrimSpace(text), param
		return nil
	}
	var parts []contentPart
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return badParam(param, "must be a string or an array of content parts")
	}
	var texts []string
	for i, p := range parts {
		pp := fmt.Sprintf("%s[%d]", param, i)
		switch p.Type {
		case "text":
			texts = append(texts, p.Text)
			r.textParam = pp
		case "image_url":
			if r.imageParam != "" {
				return badParam(pp, "one image per request (the first is %s)", r.imageParam)
			}
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return badParam(pp+".image_url.url", "required")
			}
			r.imageParam = pp + ".image_url"
			if err := r.setImage(p.ImageURL.URL); err != nil {
				return err
			}
		default:
			return badParam(pp+".type", `must be "text" or "image_url", got %q`, p.Type)
		}
	}
	r.text = strings.TrimSpace(strings.Join(texts, "\n"))
	return nil
}

// setImage takes an image URL: a data: URI is decoded now, a remote URL
// is kept for the handler to fetch (or refuse).
func (r *chatRequest) setImage(url string) error {
	if strings.HasPrefix(url, "data:") {
		img, err := decodeDataURI(url)
		if err != nil {
			return badParam(r.imageParam, "%v", err)
		}
		r.image = img
		return nil
	}
	r.imageURL = url
	return nil
}

// captionRequest is the pancap.v1 request of a chain run.
func (r *chatRequest) captionRequest(requestID string) *pb.CaptionRequest {
	req := &pb.CaptionRequest{Image: r.image, Stages: r.ext.Stages, Sampling: &r.sampling, Stop: r.stop,
		IgnoreEos: r.ignoreEOS, RequestId: requestID}
	if r.maxTokens > 0 {
		n := r.ext.Stages
		if n < 1 || n > 4 { // 0: all four; out of range: the validator names it
			n = 4
		}
		for range n {
			req.MaxNewTokens = append(req.MaxNewTokens, r.maxTokens)
		}
	}
	return req
}

// generateRequest is the pancap.v1 request of a free-form prompt.
func (r *chatRequest) generateRequest(requestID string) *pb.GenerateRequest {
	return &pb.GenerateRequest{Image: r.image, Prompt: r.text, MaxNewTokens: r.maxTokens, Sampling: &r.sampling,
		Stop: r.stop, IgnoreEos: r.ignoreEOS, RequestId: requestID}
}

// param names, in this API's terms, the field a validation error of the
// server names in pancap.v1 terms.
func (r *chatRequest) param(field string) string {
	base, index, _ := strings.Cut(field, "[")
	switch base {
	case "image":
		return r.imageParam
	case "prompt":
		return r.textParam
	case "stages":
		return "pancap.stages"
	case "max_new_tokens":
		return r.maxParam
	case "stop":
		if index != "" {
			return "stop[" + index
		}
		return "stop"
	case "request_id":
		return "X-Request-Id"
	}
	return strings.TrimPrefix(field, "sampling.")
}
