// Package client is the Go client library of Pancap Serve: Dial a server,
// then Caption an image in one call or StreamCaption it stage by stage with
// an iterator of events. Calls that fail with UNAVAILABLE are retried with
// exponential backoff, and every call gets a default deadline unless its
// context has one. It imports only the generated API and grpc.
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// Defaults of the options.
const (
	DefaultTimeout          = 10 * time.Minute // a whole 13B chain on a busy server
	DefaultMaxAttempts      = 5
	DefaultInitialBackoff   = 200 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultKeepaliveTime    = 30 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
	DefaultMaxRecvMsgBytes  = 64 << 20
)

type options struct {
	tls              *tls.Config
	token            string
	timeout          time.Duration
	maxAttempts      int
	initialBackoff   time.Duration
	maxBackoff       time.Duration
	keepaliveTime    time.Duration
	keepaliveTimeout time.Duration
	dialOpts         []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithTLS connects over TLS with cfg (nil: the system roots). Without it the
// connection is plaintext.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg
	}
}

// WithToken sends "authorization: Bearer token" on every call (in the clear
// unless WithTLS is given too).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTimeout sets the deadline of calls whose context has none (0: none).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetry sets how UNAVAILABLE is retried: at most maxAttempts attempts
// (1: no retry), backoff starting at initial, doubling up to maxBackoff.
func WithRetry(maxAttempts int, initial, maxBackoff time.Duration) Option {
	return func(o *options) {
		o.maxAttempts, o.initialBackoff, o.maxBackoff = maxAttempts, initial, maxBackoff
	}
}

// WithKeepalive pings the server after time without activity and drops the
// connection when the ping is not answered within timeout. The server
// refuses pings more frequent than every 10 s by default.
func WithKeepalive(time, timeout time.Duration) Option {
	return func(o *options) { o.keepaliveTime, o.keepaliveTimeout = time, timeout }
}

// WithDialOptions appends raw grpc dial options (e.g. a custom dialer).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Client is a connection to a Pancap Serve server. It is safe for
// concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	api     pb.CaptionerClient
	timeout time.Duration
}

// bearer is a per-call credential carrying the token.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// retryServiceConfig is the grpc service config that retries UNAVAILABLE on
// every method of the service.
func retryServiceConfig(o *options) string {
	if o.maxAttempts <= 1 {
		return `{}`
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
	return fmt.Sprintf(`{"methodConfig":[{"name":[{"service":%q}],"retryPolicy":{`+
		`"maxAttempts":%d,"initialBackoff":%q,"maxBackoff":%q,"backoffMultiplier":2,`+
		`"retryableStatusCodes":["UNAVAILABLE"]}}]}`,
		pb.Captioner_ServiceDesc.ServiceName, o.maxAttempts, secs(o.initialBackoff), secs(o.maxBackoff))
}

// Dial creates a client of the server at addr ("host:port"). The connection
// is made lazily, on the first call.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := &options{
		timeout:          DefaultTimeout,
		maxAttempts:      DefaultMaxAttempts,
		initialBackoff:   DefaultInitialBackoff,
		maxBackoff:       DefaultMaxBackoff,
		keepaliveTime:    DefaultKeepaliveTime,
		keepaliveTimeout: DefaultKeepaliveTimeout,
	}
	for _, opt := range opts {
		opt(o)
	}
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(retryServiceConfig(o)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(DefaultMaxRecvMsgBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: o.keepaliveTime, Timeout: o.keepaliveTimeout}),
	}
	if o.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	conn, err := grpc.NewClient(addr, append(dopts, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, api: pb.NewCaptionerClient(conn), timeout: o.timeout}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// API returns the raw generated client, for calls this package does not wrap.
func (c *Client) API() pb.CaptionerClient { return c.api }

// Conn returns the underlying connection (e.g. for a health client).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// withDeadline applies the default timeout when ctx has no deadline.
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// Caption runs the whole chain on req.Image and returns the result.
func (c *Client) Caption(ctx context.Context, req *pb.CaptionRequest) (*pb.CaptionResponse, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.api.Caption(ctx, req)
}

// ModelInfo describes the server's model and limits.
func (c *Client) ModelInfo(ctx context.Context) (*pb.ModelInfo, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.api.GetModelInfo(ctx, &pb.GetModelInfoRequest{})
}

// StreamCaption runs the chain on req.Image and yields its events, the last
// being the final result. An error ends the sequence; stopping the iteration
// early cancels the call on the server.
func (c *Client) StreamCaption(ctx context.Context, req *pb.CaptionRequest) iter.Seq2[*pb.CaptionEvent, error] {
	return func(yield func(*pb.CaptionEvent, error) bool) {
		ctx, cancel := c.withDeadline(ctx)
		defer cancel()
		stream, err := c.api.StreamCaption(ctx, req)
		if err != nil {
			yield(nil, err)
			return
		}
		recvAll(stream.Recv, yield)
	}
}

// Generate runs one free-form prompt and yields its events, the last being
// the final result. Stopping the iteration early cancels the call.
func (c *Client) Generate(ctx context.Context, req *pb.GenerateRequest) iter.Seq2[*pb.GenerateEvent, error] {
	return func(yield func(*pb.GenerateEvent, error) bool) {
		ctx, cancel := c.withDeadline(ctx)
		defer cancel()
		stream, err := c.api.Generate(ctx, req)
		if err != nil {
			yield(nil, err)
			return
		}
		recvAll(stream.Recv, yield)
	}
}

// recvAll yields what recv returns until io.EOF, an error or the consumer
// stops.
func recvAll[T any](recv func() (T, error), yield func(T, error) bool) {
	for {
		ev, err := recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			var zero T
			yield(zero, err)
			return
		}
		if !yield(ev, nil) {
			return
		}
	}
}
