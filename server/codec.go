package server

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// requestCodec is the server's codec: gRPC's proto codec, except that a
// request message that does not parse (bad wire format, a string field
// that is not UTF-8) is reported as INVALID_ARGUMENT instead of INTERNAL.
//
// gRPC wraps any Unmarshal error in an INTERNAL status before an
// interceptor sees it, and decodes a unary request before calling the
// interceptors. So Unmarshal leaves the message empty, returns nil and
// records the error against the message; the interceptors of
// rejectMalformed, early in the chain, find it there and end the call.
type requestCodec struct {
	proto encoding.CodecV2
	bad   sync.Map // proto.Message → error of its Unmarshal, until the interceptor takes it
}

func newRequestCodec() *requestCodec {
	return &requestCodec{proto: encoding.GetCodecV2(protocodec.Name)}
}

// Name is the proto codec's, so the content-subtype is unchanged.
func (c *requestCodec) Name() string { return protocodec.Name }

// Marshal marshals as the proto codec does.
func (c *requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// Unmarshal unmarshals as the proto codec does; a message that does not
// parse is reset and its error recorded for take.
func (c *requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.proto.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	proto.Reset(m)
	c.bad.Store(m, err)
	return nil
}

// take returns the INVALID_ARGUMENT status of a request message whose
// Unmarshal failed, forgetting it, or nil.
func (c *requestCodec) take(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	err, found := c.bad.LoadAndDelete(m)
	if !found {
		return nil
	}
	// The proto package spaces its messages with U+00A0 on purpose (they are
	// not stable); a client reads them better with plain spaces.
	return status.Errorf(codes.InvalidArgument, "malformed request message %s: %s",
		m.ProtoReflect().Descriptor().FullName(), strings.ReplaceAll(fmt.Sprint(err), "\u00a0", " "))
}

// unary ends a unary call whose request did not parse. It must come before
// any interceptor that can end a call without calling on (auth, the rate
// limiter), so that every recorded error is taken.
func (c *requestCodec) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if err := c.take(req); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

// stream makes a stream's RecvMsg fail with INVALID_ARGUMENT for a message
// that did not parse.
func (c *requestCodec) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	return next(srv, &checkedStream{ServerStream: ss, codec: c})
}

// checkedStream is a ServerStream whose RecvMsg reports messages that did
// not parse.
type checkedStream struct {
	grpc.ServerStream
	codec *requestCodec
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.codec.take(m)
}
