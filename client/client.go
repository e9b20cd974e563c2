// Package client is the Go client library of Pancap Serve: Dial a server,
// then Caption an image in one call or StreamCaption it stage by stage with
// an iterator of events. Calls that fail with UNAVAILABLE before the server
// answered (a replica that drains or went away) are retried with
// exponential backoff, and every call gets a default deadline unless its
// context has one. Dial takes one address, a grpc target such as
// "dns:///pancap:50051", or several comma-separated addresses; calls are
// spread over every address a target resolves to (round_robin). It imports
// only the generated API and grpc.
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"iter"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

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
	// DefaultMaxRetryBufferBytes is the largest request a call can still
	// retry: grpc keeps a request this size to resend it and commits larger
	// ones to their first attempt. It matches the server's default
	// --max-request-bytes (grpc's own default, 256 KiB, is smaller than an
	// ordinary photo).
	DefaultMaxRetryBufferBytes = 32 << 20
)

// staticScheme is the resolver scheme of a comma-separated address list.
const staticScheme = "pancap-static"

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

// serviceConfig is the grpc service config: round_robin over the target's
// addresses, and a retry of UNAVAILABLE on every method of the service.
// grpc retries a call only until the server has answered it (for a stream:
// until its first event), so a retried call never repeats output.
func serviceConfig(o *options) string {
	const lb = `"loadBalancingConfig":[{"round_robin":{}}]`
	if o.maxAttempts <= 1 {
		return `{` + lb + `}`
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
	return fmt.Sprintf(`{`+lb+`,"methodConfig":[{"name":[{"service":%q}],"retryPolicy":{`+
		`"maxAttempts":%d,"initialBackoff":%q,"maxBackoff":%q,"backoffMultiplier":2,`+
		`"retryableStatusCodes":["UNAVAILABLE"]}}]}`,
		pb.Captioner_ServiceDesc.ServiceName, o.maxAttempts, secs(o.initialBackoff), secs(o.maxBackoff))
}

// staticTarget turns a comma-separated list of host:port addresses into a
// target and the resolver that resolves it to all of them; a single address
// or target passes unchanged (checked by checkAddr), with no resolver.
func staticTarget(addr string) (string, resolver.Builder, error) {
	if !strings.Contains(addr, ",") {
		return addr, nil, checkAddr(addr)
	}
	var state resolver.State
	for a := range strings.SplitSeq(addr, ",") {
		a = strings.TrimSpace(a)
		if err := checkAddr(a); err != nil || strings.Contains(a, ":/") {
			return "", nil, fmt.Errorf("address list %q: want host:port,host:port,…", addr)
		}
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r := manual.NewBuilderWithScheme(staticScheme)
	r.InitialState(state)
	return staticScheme + ":///" + addr, r, nil
}

// Dial creates a client of the server at addr: "host:port", a grpc target
// ("dns:///host:port" spreads calls over every address the name has), or
// "host:port,host:port,…" (calls spread over the listed servers). The
// connections are made lazily, on the first call.
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
	target, static, err := staticTarget(addr)
	if err != nil {
		return nil, err
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(serviceConfig(o)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(DefaultMaxRecvMsgBytes),
			grpc.MaxRetryRPCBufferSize(DefaultMaxRetryBufferBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: o.keepaliveTime, Timeout: o.keepaliveTimeout}),
	}
	if o.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	if static != nil {
		dopts = append(dopts, grpc.WithResolvers(static))
	}
	conn, err := grpc.NewClient(target, append(dopts, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, api: pb.NewCaptionerClient(conn), timeout: o.timeout}, nil
}

// checkAddr refuses a plain address that is not host:port with a port
// number, so a typo fails at once instead of after the resolver's retries.
// Targets with a resolver scheme (dns:///, unix:, passthrough:///, …) are
// left to gRPC.
func checkAddr(addr string) error {
	if strings.Contains(addr, ":/") || strings.HasPrefix(addr, "unix:") {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("address %q: want host:port, e.g. 127.0.0.1:50051, or a gRPC target such as dns:///host:port", addr)
	}
	return nil
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
