package server

import (
	"context"
	"fmt"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// maxStages is the length of PancapChain.
const maxStages = 4

// fieldError is a validation failure of one request field.
type fieldError struct {
	field string // path of the field, e.g. "sampling.top_p"
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// invalid returns a fieldError for field.
func invalid(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// validator checks requests against the server's limits before any handler
// sees them; a failure is INVALID_ARGUMENT naming the field.
type validator struct{ cfg Config }

// unary is the unary interceptor.
func (v validator) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	setRequestID(ctx, requestIDOf(req))
	if err := v.check(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return handler(ctx, req)
}

// stream is the stream interceptor: it checks each received message.
func (v validator) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, validatingStream{ss, v})
}

// validatingStream validates the messages its RecvMsg returns.
type validatingStream struct {
	grpc.ServerStream
	v validator
}

// RecvMsg receives m and validates it.
func (s validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	setRequestID(s.Context(), requestIDOf(m))
	if err := s.v.check(m); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// requestIDOf returns the request_id of a request message ("" for others).
func requestIDOf(req any) string {
	if r, ok := req.(interface{ GetRequestId() string }); ok {
		return r.GetRequestId()
	}
	return ""
}

// check validates one request message; other messages pass.
func (v validator) check(req any) error {
	switch r := req.(type) {
	case *pb.CaptionRequest:
		return v.caption(r)
	case *pb.GenerateRequest:
		return v.generate(r)
	}
	return nil
}

func (v validator) caption(r *pb.CaptionRequest) error {
	if err := v.image(r.GetImage(), true); err != nil {
		return err
	}
	if s := r.GetStages(); s < 0 || s > maxStages {
		return invalid("stages", "must be in [0, %d] (0 means all), got %d", maxStages, s)
	}
	if n := len(r.GetMaxNewTokens()); n > maxStages {
		return invalid("max_new_tokens", "at most %d values (one per stage), got %d", maxStages, n)
	}
	for i, n := range r.GetMaxNewTokens() {
		if err := v.maxNewTokens(fmt.Sprintf("max_new_tokens[%d]", i), n); err != nil {
			return err
		}
	}
	return v.common(r.GetSampling(), r.GetStop(), r.GetRequestId())
}

func (v validator) generate(r *pb.GenerateRequest) error {
	if r.GetPrompt() == "" {
		return invalid("prompt", "required")
	}
	if n := len(r.GetPrompt()); n > v.cfg.MaxPromptBytes {
		return invalid("prompt", "at most %d bytes, got %d", v.cfg.MaxPromptBytes, n)
	}
	if err := v.image(r.GetImage(), false); err != nil {
		return err
	}
	if err := v.maxNewTokens("max_new_tokens", r.GetMaxNewTokens()); err != nil {
		return err
	}
	return v.common(r.GetSampling(), r.GetStop(), r.GetRequestId())
}

// image checks the encoded image's size; the pixel and frame limits are
// checked on its header by the backend, before decoding.
func (v validator) image(img []byte, required bool) error {
	if len(img) == 0 && required {
		return invalid("image", "required")
	}
	if len(img) > v.cfg.MaxImageBytes {
		return invalid("image", "%d bytes, limit %d", len(img), v.cfg.MaxImageBytes)
	}
	return nil
}

func (v validator) maxNewTokens(field string, n int32) error {
	if n < 0 || int(n) > v.cfg.MaxNewTokens {
		return invalid(field, "must be in [0, %d] (0 means the default), got %d", v.cfg.MaxNewTokens, n)
	}
	return nil
}

// common checks the fields shared by both requests.
func (v validator) common(sp *pb.SamplingParams, stop []string, requestID string) error {
	if t := sp.GetTemperature(); !(t >= 0) || math.IsInf(float64(t), 1) {
		return invalid("sampling.temperature", "must be finite and >= 0, got %v", t)
	}
	if p := sp.GetTopP(); !(p >= 0 && p <= 1) {
		return invalid("sampling.top_p", "must be in [0, 1] (0 or 1: off), got %v", p)
	}
	if k := sp.GetTopK(); k < 0 {
		return invalid("sampling.top_k", "must be >= 0 (0: off), got %d", k)
	}
	if len(stop) > v.cfg.MaxStopStrings {
		return invalid("stop", "at most %d strings, got %d", v.cfg.MaxStopStrings, len(stop))
	}
	for i, s := range stop {
		if s == "" || len(s) > v.cfg.MaxStopBytes {
			return invalid(fmt.Sprintf("stop[%d]", i), "must be 1 to %d bytes, got %d", v.cfg.MaxStopBytes, len(s))
		}
	}
	if len(requestID) > MaxRequestIDBytes {
		return invalid("request_id", "at most %d bytes, got %d", MaxRequestIDBytes, len(requestID))
	}
	return nil
}
