package server

import (
	"context"
	"strings"
	"sync"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/pancap-serve/pancap/batcher"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDHeader is the metadata key of a request id set by a proxy or a
// client that does not fill request_id.
const RequestIDHeader = "x-request-id"

// requestIDKey keys a *callID in a call's context.
type requestIDKey struct{}

// callID holds the sanitised request id of one call. The interceptor that
// creates it runs before the logging one, and the validator fills it from the
// request message later, so the "finished call" line carries the id.
type callID struct {
	mu sync.Mutex
	id string
}

// set records id (sanitised) unless it is empty.
func (c *callID) set(id string) {
	if id == "" {
		return
	}
	id = sanitizeRequestID(id)
	c.mu.Lock()
	c.id = id
	c.mu.Unlock()
}

func (c *callID) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// sanitizeRequestID makes a client-chosen id safe for logs: bytes outside
// printable ASCII become '?', and the result is cut to
// batcher.MaxRequestIDBytes (the x-request-id metadata included).
func sanitizeRequestID(id string) string {
	if len(id) > batcher.MaxRequestIDBytes {
		id = id[:batcher.MaxRequestIDBytes]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, id)
}

// withRequestID returns ctx carrying a fresh callID, filled from the
// x-request-id metadata when present.
func withRequestID(ctx context.Context) context.Context {
	c := &callID{}
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) > 0 {
		c.set(v[0])
	}
	return context.WithValue(ctx, requestIDKey{}, c)
}

// setRequestID records the request message's request_id for the call's log
// line; it takes precedence over the metadata.
func setRequestID(ctx context.Context, id string) {
	if c, ok := ctx.Value(requestIDKey{}).(*callID); ok {
		c.set(id)
	}
}

// requestIDFields is the logging field of the call's request id, if any.
func requestIDFields(ctx context.Context) logging.Fields {
	if c, ok := ctx.Value(requestIDKey{}).(*callID); ok {
		if id := c.get(); id != "" {
			return logging.Fields{"request_id", id}
		}
	}
	return nil
}

// requestIDUnary installs the call's request id holder.
func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withRequestID(ctx), req)
}

// requestIDStream installs the call's request id holder.
func requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = withRequestID(ss.Context())
	return handler(srv, w)
}
