// Package server is the gRPC transport of Pancap Serve: the Captioner
// handlers, the interceptor chain (metrics, logging, auth, rate limit,
// validation, recovery), health, reflection, the /metrics endpoint and
// graceful shutdown. It knows nothing of the model: it drives a Backend (the
// batcher) and maps its events and errors to the pancap.v1 API.
package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/model/imageproc"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// Backend is what the server drives: the batcher. Submit calls return a
// stream of events that ends with one batcher.EventDone (carrying the Result
// or the error) and is then closed; cancelling ctx stops the work.
type Backend interface {
	SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error)
	SubmitGenerate(ctx context.Context, req batcher.GenerateRequest) (<-chan batcher.Event, error)
	Spec() engine.Spec
	Ready() bool
}

// Defaults of Config, used where a field is left zero.
const (
	DefaultMaxRecvMsgBytes      = 32 << 20
	DefaultMaxConcurrentStreams = 1024
	DefaultDrainTimeout         = 30 * time.Second
	DefaultKeepaliveTime        = 2 * time.Minute
	DefaultKeepaliveTimeout     = 20 * time.Second
	DefaultKeepaliveMinTime     = 10 * time.Second
)

// stopGrace bounds how long Shutdown waits, after cancelling the calls in
// flight, for their handlers to return (a wedged backend must not keep the
// process from exiting).
const stopGrace = 5 * time.Second

// readyPoll is how often the server asks the backend whether it is ready.
const readyPoll = 50 * time.Millisecond

// Config configures a Server. The zero value of every field means its
// default (see the Default constants).
type Config struct {
	Addr        string // gRPC listen address of Run, e.g. "127.0.0.1:50051"
	MetricsAddr string // HTTP listen address of /metrics in Run; "" disables it

	AuthToken       string // bearer token required on every call but health and reflection, and on /metrics; "" disables auth
	MetricsNoAuth   bool   // serve /metrics without the bearer token even when AuthToken is set (for scrapers that cannot send one)
	TLSCertFile     string // PEM certificate; with TLSKeyFile turns TLS on, for gRPC and /metrics
	TLSKeyFile      string // PEM private key
	TLSClientCAFile string // PEM CA bundle; when set, clients must present a certificate it signed (mTLS)

	RateLimit float64 // admitted calls per second over the whole server; 0 disables the limiter
	RateBurst int     // bucket size of the limiter; 0 means max(1, RateLimit)

	MaxRecvMsgBytes      int    // largest request message; larger gets RESOURCE_EXHAUSTED
	MaxConcurrentStreams uint32 // per HTTP/2 connection

	// Limits are the request rules, checked before any handler; the
	// batcher must be given the same. Zero fields: batcher.DefaultLimits.
	Limits batcher.Limits
	// Image are the decoding limits the model applies (the server reports
	// them; the model checks them on each image's header before decoding).
	// Zero fields: imageproc.DefaultLimits.
	Image imageproc.Limits

	KeepaliveTime    time.Duration // ping an idle connection after this long
	KeepaliveTimeout time.Duration // close it when the ping is not answered within this
	KeepaliveMinTime time.Duration // refuse client pings more frequent than this

	DrainTimeout time.Duration // how long Run's shutdown waits for calls in flight

	Version string       // the serving build, reported in GetModelInfo (see internal/buildinfo)
	Logger  *slog.Logger // nil means slog.Default()
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxRecvMsgBytes, DefaultMaxRecvMsgBytes)
	c.Limits = c.Limits.WithDefaults()
	c.Image = c.Image.WithDefaults()
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.RateBurst == 0 {
		c.RateBurst = max(1, int(c.RateLimit))
	}
	defDur(&c.KeepaliveTime, DefaultKeepaliveTime)
	defDur(&c.KeepaliveTimeout, DefaultKeepaliveTimeout)
	defDur(&c.KeepaliveMinTime, DefaultKeepaliveMinTime)
	defDur(&c.DrainTimeout, DefaultDrainTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ErrConfig is wrapped by the errors of New for a bad Config.
var ErrConfig = errors.New("server config")

// Server is the Pancap Serve gRPC server.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	grpc    *grpc.Server
	tls     *tls.Config // nil: plaintext
	health  *health.Server
	metrics *prometheus.Registry

	mu       sync.Mutex    // guards watched and stopped
	watched  bool          // the readiness watcher was started
	stopped  bool          // Shutdown was called
	done     chan struct{} // closed by Shutdown
	watching sync.WaitGroup

	lis, metricsLis net.Listener // bound by Listen; metricsLis nil without MetricsAddr

	limiter *rate.Limiter // nil without Config.RateLimit; shared with the HTTP API (Allow)
}

// New builds the server: the whole interceptor chain, health (NOT_SERVING
// until backend.Ready), reflection, keepalive and message limits. opts are
// appended to the server options (for tests and embedding).
func New(cfg Config, backend Backend, opts ...grpc.ServerOption) (*Server, error) {
	if backend == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrConfig)
	}
	cfg = cfg.withDefaults()
	if cfg.RateLimit < 0 {
		return nil, fmt.Errorf("%w: negative rate limit %v", ErrConfig, cfg.RateLimit)
	}
	s := &Server{
		cfg:     cfg,
		backend: backend,
		log:     cfg.Logger,
		health:  health.NewServer(),
		metrics: prometheus.NewRegistry(),
		done:    make(chan struct{}),
	}

	srvMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	s.metrics.MustRegister(srvMetrics,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		s.log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
		logging.WithFieldsFromContext(requestIDFields),
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.ErrorContext(ctx, "panic in a handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	unary := []grpc.UnaryServerInterceptor{
		requestIDUnary,
		srvMetrics.UnaryServerInterceptor(),
		logging.UnaryServerInterceptor(logger, logOpts...),
	}
	stream := []grpc.StreamServerInterceptor{
		requestIDStream,
		srvMetrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(logger, logOpts...),
	}
	// Before auth and the limiter: every request that failed to parse is
	// taken (see requestCodec), and is logged and counted.
	codec := newRequestCodec()
	unary, stream = append(unary, codec.unary), append(stream, codec.stream)
	guarded := selector.MatchFunc(isGuarded)
	if cfg.AuthToken != "" {
		authFn := bearerAuth(cfg.AuthToken)
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authFn), guarded))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(authFn), guarded))
	}
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
		lim := limiter{s.limiter}
		unary = append(unary, selector.UnaryServerInterceptor(ratelimit.UnaryServerInterceptor(lim), guarded))
		stream = append(stream, selector.StreamServerInterceptor(ratelimit.StreamServerInterceptor(lim), guarded))
	}
	v := validator{cfg}
	unary = append(unary, v.unary, recovery.UnaryServerInterceptor(recoverOpt))
	stream = append(stream, v.stream, recovery.StreamServerInterceptor(recoverOpt))

	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
	}
	tlsConf, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		s.tls = tlsConf
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	s.grpc = grpc.NewServer(append(sopts, opts...)...)

	pb.RegisterCaptionerServer(s.grpc, &captioner{s: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	srvMetrics.InitializeMetrics(s.grpc)
	s.setServing(false)
	return s, nil
}

// serverTLS builds the TLS configuration of cfg, shared by the gRPC and the
// metrics listeners; nil when TLS is off.
func serverTLS(cfg Config) (*tls.Config, error) {
	switch {
	case cfg.TLSCertFile == "" && cfg.TLSKeyFile == "":
		if cfg.TLSClientCAFile != "" {
			return nil, fmt.Errorf("%w: a client CA needs TLS (a certificate and a key)", ErrConfig)
		}
		return nil, nil
	case cfg.TLSCertFile == "" || cfg.TLSKeyFile == "":
		return nil, fmt.Errorf("%w: TLS needs both a certificate and a key", ErrConfig)
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: TLS: %w", ErrConfig, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client CA: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: client CA %s holds no PEM certificate", ErrConfig, cfg.TLSClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// isGuarded tells whether auth and the rate limiter apply to a call: all
// but health checks and reflection.
func isGuarded(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service != healthpb.Health_ServiceDesc.ServiceName &&
		!strings.HasPrefix(c.Service, "grpc.reflection.")
}

// bearerAuth checks "authorization: bearer <token>" in constant time.
func bearerAuth(token string) auth.AuthFunc {
	want := []byte(token)
	return func(ctx context.Context) (context.Context, error) {
		got, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, status.Error(codes.Unauthenticated,
				"this server requires a bearer token: send the metadata \"authorization: Bearer <token>\" (pancap: --auth-token or $PANCAP_AUTH_TOKEN)")
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			return nil, status.Error(codes.Unauthenticated, "invalid bearer token: check --auth-token / $PANCAP_AUTH_TOKEN against the server's")
		}
		return ctx, nil
	}
}

// limiter adapts a token bucket to the ratelimit middleware.
type limiter struct{ *rate.Limiter }

// Limit refuses the call when the bucket is empty.
func (l limiter) Limit(context.Context) error {
	if !l.Allow() {
		return errors.New("rate limit exceeded")
	}
	return nil
}

// codeToLevel is the log level of a finished call: the client's own
// choices (cancel, deadline) and its mistakes are not server errors.
func codeToLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.DeadlineExceeded, codes.InvalidArgument,
		codes.Unauthenticated, codes.NotFound, codes.AlreadyExists:
		return logging.LevelInfo
	case codes.ResourceExhausted, codes.Unavailable, codes.FailedPrecondition,
		codes.PermissionDenied, codes.Aborted, codes.OutOfRange:
		return logging.LevelWarn
	default:
		return logging.LevelError
	}
}

// setServing sets the health status of the server and of the service.
func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(pb.Captioner_ServiceDesc.ServiceName, st)
}

// watchReady mirrors backend.Ready into the health status until Shutdown.
func (s *Server) watchReady() {
	defer s.watching.Done()
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	serving := false
	for {
		if r := s.backend.Ready(); r != serving {
			serving = r
			s.setServing(r)
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// Serve serves gRPC on lis until Shutdown; it returns nil after a shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if !s.watched && !s.stopped {
		s.watched = true
		s.watching.Add(1)
		go s.watchReady()
	}
	s.mu.Unlock()
	return s.grpc.Serve(lis)
}

// MetricsHandler serves the Prometheus metrics of this server, behind the
// bearer token of Config.AuthToken unless Config.MetricsNoAuth is set.
func (s *Server) MetricsHandler() http.Handler {
	return s.requireToken(promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{Registry: s.metrics}))
}

// Registerer is the registry behind MetricsHandler, for the backend's own
// collectors.
func (s *Server) Registerer() prometheus.Registerer { return s.metrics }

// Shutdown stops the server gracefully: health goes NOT_SERVING, new calls
// are refused and calls in flight may finish until ctx is done; then the
// remaining ones are cancelled. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	already := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if already {
		return
	}
	s.health.Shutdown()
	close(s.done)
	s.watching.Wait()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.log.Warn("drain deadline reached: cancelling calls in flight")
		s.grpc.Stop()
		select {
		case <-stopped:
		case <-time.After(stopGrace):
			s.log.Error("calls still running after their cancellation; giving up on them", "waited", stopGrace)
		}
	}
}

// Listen binds Config.Addr (and Config.MetricsAddr when set), so that a busy
// port or a bad address fails before any slow start-up work such as loading
// the model. Run serves on these listeners; calling Listen first is optional.
func (s *Server) Listen() error {
	if s.lis != nil {
		return nil
	}
	lis, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.MetricsAddr != "" {
		metricsLis, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			lis.Close()
			return fmt.Errorf("listen %s: %w", s.cfg.MetricsAddr, err)
		}
		if s.tls != nil {
			metricsLis = tls.NewListener(metricsLis, s.tls)
		}
		s.metricsLis = metricsLis
	}
	s.lis = lis
	return nil
}

// Run listens (see Listen) unless already listening, serves until ctx is
// cancelled, then shuts down within Config.DrainTimeout. It returns the
// first serving error, or nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	lis, metricsLis := s.lis, s.metricsLis
	var metricsSrv *http.Server
	if metricsLis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	}

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- s.Serve(lis) })
	s.log.Info("serving gRPC", "addr", lis.Addr().String(), "tls", s.tls != nil,
		"mtls", s.cfg.TLSClientCAFile != "", "auth", s.cfg.AuthToken != "")
	if metricsSrv != nil {
		wg.Go(func() {
			if err := metricsSrv.Serve(metricsLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		})
		s.log.Info("serving metrics", "addr", metricsLis.Addr().String(), "tls", s.tls != nil)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("shutting down", "drain_timeout", s.cfg.DrainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	s.Shutdown(drainCtx)
	if metricsSrv != nil {
		if err := metricsSrv.Shutdown(drainCtx); err != nil {
			metricsSrv.Close()
		}
	}
	wg.Wait()
	return runErr
}
