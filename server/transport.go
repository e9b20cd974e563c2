package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pancap-serve/pancap/batcher"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// The methods below let another transport of the same process (the
// OpenAI-compatible HTTP API of package openai) serve requests exactly as
// the gRPC handlers do: the same validator and limits, the same backend, the
// same error mapping to gRPC codes, the same health and credentials.

// Config returns the server's configuration with the defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// TLSConfig is the TLS configuration of the gRPC and metrics listeners; nil
// when TLS is off.
func (s *Server) TLSConfig() *tls.Config { return s.tls }

// Authorized reports, in constant time, whether token is the bearer token
// of Config.AuthToken; always true when auth is off.
func (s *Server) Authorized(token string) bool {
	return s.cfg.AuthToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AuthToken)) == 1
}

// Allow takes a token from the rate limiter the gRPC calls take theirs from
// (Config.RateLimit); always true without one.
func (s *Server) Allow() bool { return s.limiter == nil || s.limiter.Allow() }

// Serving reports the gRPC health status of the server: true once the model
// is loaded and until a shutdown begins.
func (s *Server) Serving() bool {
	r, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// Validate checks a *pb.CaptionRequest or *pb.GenerateRequest against the
// server's limits, as the gRPC interceptor does; InvalidField names the field
// of its error.
func (s *Server) Validate(req any) error { return validator{s.cfg}.check(req) }

// InvalidField returns the request field (e.g. "sampling.top_p",
// "stop[2]") that an error of Validate names, and false for other errors.
func InvalidField(err error) (string, bool) {
	var fe *batcher.FieldError
	if errors.As(err, &fe) {
		return fe.Field, true
	}
	return "", false
}

// RunCaption runs a CaptionRequest that Validate accepted, as the Caption
// and StreamCaption handlers do: it hands every event before the last to
// emit (nil: none) and returns the result, or a gRPC status error mapped as
// the handlers map theirs. Cancelling ctx cancels the work.
func (s *Server) RunCaption(ctx context.Context, req *pb.CaptionRequest, emit func(*batcher.Event) error) (*batcher.Result, error) {
	creq := chainRequest(req)
	return (&captioner{s: s}).drive(ctx, func(ctx context.Context) (<-chan batcher.Event, error) {
		return s.backend.SubmitChain(ctx, creq)
	}, emit)
}

// RunGenerate runs a GenerateRequest that Validate accepted, as RunCaption
// runs a CaptionRequest.
func (s *Server) RunGenerate(ctx context.Context, req *pb.GenerateRequest, emit func(*batcher.Event) error) (*batcher.Result, error) {
	greq := generateRequest(req)
	return (&captioner{s: s}).drive(ctx, func(ctx context.Context) (<-chan batcher.Event, error) {
		return s.backend.SubmitGenerate(ctx, greq)
	}, emit)
}

// ModelInfo describes the model and the limits, as GetModelInfo does
// (UNAVAILABLE while the model is not ready).
func (s *Server) ModelInfo(ctx context.Context) (*pb.ModelInfo, error) {
	return (&captioner{s: s}).GetModelInfo(ctx, &pb.GetModelInfoRequest{})
}
