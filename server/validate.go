package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// validator checks requests against the limits before any handler sees
// them; a failure is INVALID_ARGUMENT naming the field.
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

// check validates one request message: the transport's own rules (the
// encoded image's size on the wire, at most one max_new_tokens value per
// stage), then the request rules of the one validator, batcher.Limits.
// Other messages pass.
func (v validator) check(req any) error {
	switch r := req.(type) {
	case *pb.CaptionRequest:
		if n := len(r.GetMaxNewTokens()); n > len(chain.Stages) {
			return &batcher.FieldError{Field: "max_new_tokens", Msg: fmt.Sprintf("at most %d values (one per stage), got %d", len(chain.Stages), n)}
		}
		if err := v.imageBytes(r.GetImage()); err != nil {
			return err
		}
		return v.cfg.Limits.CheckChain(chainRequest(r))
	case *pb.GenerateRequest:
		if err := v.imageBytes(r.GetImage()); err != nil {
			return err
		}
		return v.cfg.Limits.CheckGenerate(generateRequest(r))
	}
	return nil
}

// imageBytes refuses an encoded image over the decoding limits' size at
// once, before the request reaches the backend (which checks pixels and
// frames on the header).
func (v validator) imageBytes(img []byte) error {
	if n := len(img); n > v.cfg.Image.MaxBytes {
		return &batcher.FieldError{Field: "image", Msg: fmt.Sprintf("%d bytes, limit %d", n, v.cfg.Image.MaxBytes)}
	}
	return nil
}
