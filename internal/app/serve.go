// Package app wires the serving process of `pancap serve`: its whole
// configuration and flags, the model on its device, the batcher, the gRPC
// server and the OpenAI-compatible HTTP API, loading in the background,
// draining on shutdown and device loss. The command line (cmd/pancap) only
// parses; the end-to-end tests of the process live here.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/buildinfo"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/model/imageproc"
	"github.com/pancap-serve/pancap/openai"
	"github.com/pancap-serve/pancap/server"
)

// ServeConfig is the whole configuration of `pancap serve`.
type ServeConfig struct {
	server.Config
	ModelFlags

	MaxQueue     int    // requests waiting for admission before RESOURCE_EXHAUSTED
	DecodeBudget int64  // bytes of image decoding in flight over all requests
	ChainReuse   bool   // share the image prefix's KV across stages and requests
	Speculative  bool   // prompt-lookup speculative decoding of greedy sequences (CPU)
	LogLevel     string // debug, info, warn, error
	LogFormat    string // text or json

	HTTP openai.Config // the OpenAI-compatible HTTP API; off without HTTP.Addr
}

// NewServeConfig returns the configuration with every default, its fields
// bound to flags of fs (each also read from its environment variable by the
// command line): the one table of serve's defaults.
func NewServeConfig(fs *pflag.FlagSet) *ServeConfig {
	cfg := &ServeConfig{}
	f := fs
	cfg.ModelFlags.Register(f)
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:50051", "gRPC listen address")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "HTTP listen address of /metrics (empty: off)")
	f.StringVar(&cfg.AuthToken, "auth-token", "", "require this bearer token on every call but health and reflection, and on /metrics")
	f.BoolVar(&cfg.MetricsNoAuth, "metrics-no-auth", false, "serve /metrics without the --auth-token bearer token (for scrapers that cannot send one)")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate (PEM); with --tls-key turns TLS on")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key (PEM)")
	f.StringVar(&cfg.TLSClientCAFile, "tls-client-ca", "", "require client certificates signed by this CA bundle (PEM), for gRPC and /metrics")
	f.IntVar(&cfg.MaxQueue, "max-queue", batcher.DefaultMaxQueue, "requests waiting for admission (or decoding their image) before RESOURCE_EXHAUSTED")
	f.Int64Var(&cfg.DecodeBudget, "decode-budget-bytes", batcher.DefaultDecodeBudget, "bytes that image decoding may hold at once over all requests (each image's bound from its header); requests wait for it, larger images are refused")
	f.BoolVar(&cfg.ChainReuse, "chain-reuse", true, "share the image prefix's KV cache across stages and requests")
	f.BoolVar(&cfg.Speculative, "speculative", true, "speculative decoding: greedy sequences draft tokens from their own context and verify them in one step (same outputs; CPU backend only)")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", server.DefaultDrainTimeout, "on shutdown, how long calls in flight may finish")
	f.IntVar(&cfg.MaxRecvMsgBytes, "max-request-bytes", server.DefaultMaxRecvMsgBytes, "largest request message (image included)")
	f.Uint32Var(&cfg.MaxConcurrentStreams, "max-concurrent-streams", server.DefaultMaxConcurrentStreams, "concurrent calls per connection")
	rl := batcher.DefaultLimits()
	f.IntVar(&cfg.Limits.MaxNewTokens, "max-new-tokens-limit", rl.MaxNewTokens, "largest max_new_tokens accepted per stage")
	f.IntVar(&cfg.Limits.DefaultMaxNewTokens, "default-max-new-tokens", rl.DefaultMaxNewTokens, "a stage's token limit when a request leaves max_new_tokens 0")
	f.IntVar(&cfg.Limits.MaxStopStrings, "max-stop-strings", rl.MaxStopStrings, "most stop strings per request")
	f.IntVar(&cfg.Limits.MaxStopBytes, "max-stop-bytes", rl.MaxStopBytes, "longest stop string in bytes")
	f.IntVar(&cfg.Limits.MaxPromptBytes, "max-prompt-bytes", rl.MaxPromptBytes, "longest Generate prompt in bytes")
	il := imageproc.DefaultLimits()
	f.IntVar(&cfg.Image.MaxBytes, "max-image-bytes", il.MaxBytes, "largest encoded image in bytes")
	f.IntVar(&cfg.Image.MaxPixels, "max-image-pixels", il.MaxPixels, "largest image width×height, checked on the header before decoding")
	f.IntVar(&cfg.Image.MaxFrames, "max-image-frames", il.MaxFrames, "most frames of an animated GIF")
	f.Float64Var(&cfg.RateLimit, "rate-limit", 0, "calls admitted per second over the whole server (0: unlimited)")
	f.IntVar(&cfg.RateBurst, "rate-burst", 0, "burst of the rate limiter (0: the rate)")
	f.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&cfg.HTTP.Addr, "http-addr", "", "listen address of the OpenAI-compatible HTTP API: /v1/chat/completions, /v1/models, /health (empty: off)")
	f.BoolVar(&cfg.HTTP.Metrics, "http-metrics", false, "also serve /metrics on --http-addr")
	f.StringSliceVar(&cfg.HTTP.ImageURLHosts, "http-image-url-hosts", nil, "hosts whose https image URLs the HTTP API fetches, comma-separated (empty: data: URIs only)")
	return cfg
}

// ErrBadFlag is wrapped by the errors of a configuration the flags cannot give.
var ErrBadFlag = errors.New("bad flag")

// checkFlags refuses limits that are not positive, stop-string limits above
// the batcher's caps (a larger flag would promise what it refuses), a default
// token limit above the largest, a negative --kv-cache-bytes and an unknown
// --kv-cache-dtype.
func checkFlags(cfg ServeConfig) error {
	for _, l := range []struct {
		flag    string
		v, most int
	}{
		{"--max-request-bytes", cfg.MaxRecvMsgBytes, math.MaxInt32},
		{"--max-new-tokens-limit", cfg.Limits.MaxNewTokens, math.MaxInt32},
		{"--default-max-new-tokens", cfg.Limits.DefaultMaxNewTokens, cfg.Limits.MaxNewTokens},
		{"--max-stop-strings", cfg.Limits.MaxStopStrings, batcher.MaxStopStrings},
		{"--max-stop-bytes", cfg.Limits.MaxStopBytes, batcher.MaxStopBytes},
		{"--max-prompt-bytes", cfg.Limits.MaxPromptBytes, math.MaxInt32},
		{"--max-image-bytes", cfg.Image.MaxBytes, math.MaxInt},
		{"--max-image-pixels", cfg.Image.MaxPixels, math.MaxInt},
		{"--max-image-frames", cfg.Image.MaxFrames, math.MaxInt32},
		{"--max-queue", cfg.MaxQueue, math.MaxInt32},
	} {
		if l.v < 1 || l.v > l.most {
			return fmt.Errorf("%w: %s must be in [1, %d], got %d", ErrBadFlag, l.flag, l.most, l.v)
		}
	}
	if cfg.DecodeBudget < 1 {
		return fmt.Errorf("%w: --decode-budget-bytes must be positive, got %d", ErrBadFlag, cfg.DecodeBudget)
	}
	return cfg.ModelFlags.Check()
}

// kvCacheDType parses --kv-cache-dtype ("" is the default, float32).
func kvCacheDType(name string) (kernels.DType, error) {
	if name == "" {
		return kernels.F32, nil
	}
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		if name == dt.String() {
			return dt, nil
		}
	}
	return 0, fmt.Errorf("%w: --kv-cache-dtype must be float32, bfloat16 or float16, got %q", ErrBadFlag, name)
}

// newLogger builds the server's logger on stderr.
func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

// ExitDeviceLost is the exit status of a process whose accelerator failed
// (engine.ErrDeviceLost): a sticky device error cannot be cleared in the
// process, so it ends for its supervisor to start a fresh one.
const ExitDeviceLost = 3

// lostDrain is how long the calls in flight when the accelerator fails have
// to receive their error (the batcher has failed them all) before the
// server stops: their last messages need no more, and a client's other
// streams (a health watch) must not hold a failed process for the whole
// drain timeout.
const lostDrain = 2 * time.Second

// ExitStatus is the exit status of a command that ended with err: 0 for
// nil, ExitDeviceLost when err wraps engine.ErrDeviceLost, 1 otherwise.
func ExitStatus(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, engine.ErrDeviceLost):
		return ExitDeviceLost
	}
	return 1
}

// Serve serves until ctx is cancelled. The server listens at once and
// reports NOT_SERVING while the model loads in the background. When the
// accelerator fails (see batcher.Batcher.Fatal), health turns NOT_SERVING,
// the calls the batcher failed end with UNAVAILABLE, and Serve returns an
// error wrapping engine.ErrDeviceLost (ExitStatus: ExitDeviceLost).
func Serve(ctx context.Context, cfg ServeConfig) error {
	return serve(ctx, cfg, loadEngine)
}

// serve is Serve with the model loaded by load.
func serve(ctx context.Context, cfg ServeConfig, load func(context.Context, ServeConfig) (engine.Engine, error)) error {
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Version = buildinfo.Read().String()
	if err := checkFlags(cfg); err != nil {
		return err
	}
	backend := &loadingBackend{}
	srv, err := server.New(cfg.Config, backend)
	if err != nil {
		return err
	}
	// Bind before loading: a busy port or a bad address must not cost a
	// whole model load to find out.
	if err := srv.Listen(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitHTTP, err := openai.Start(ctx, cfg.HTTP, srv)
	if err != nil {
		return err
	}
	var (
		loadErr, lostErr error
		eng              engine.Engine
		stop             func()
		loading          sync.WaitGroup
	)
	loading.Go(func() {
		start := time.Now()
		var err error
		eng, err = load(ctx, cfg)
		if err == nil {
			var b *batcher.Batcher
			if b, stop, err = startBatcher(eng, cfg, srv.Registerer()); err == nil {
				backend.set(b)
				sp := b.Spec()
				log.Info("model loaded", "name", sp.Name, "device", sp.Device, "dtype", sp.DType,
					"random_weights", sp.RandomWeights, "took", time.Since(start).Round(time.Millisecond))
				loading.Go(func() { lostErr = stopOnLoss(ctx, b, srv, cancel) })
				return
			}
		}
		loadErr = fmt.Errorf("load model: %w", err)
		cancel()
	})
	runErr := srv.Run(ctx)
	cancel()
	runErr = errors.Join(runErr, waitHTTP())
	loading.Wait()
	if stop != nil {
		stop()
	}
	if c, ok := eng.(io.Closer); ok { // the batcher's step loop has ended
		if err := c.Close(); err != nil {
			log.Warn("close model", "err", err)
		}
	}
	if loadErr != nil {
		return loadErr
	}
	if lostErr != nil {
		return lostErr
	}
	return runErr
}

// stopOnLoss waits until b stops for a lost device or ctx ends. On a loss
// it turns health NOT_SERVING, gives the calls the batcher failed lostDrain
// to receive their error, stops srv, cancels the serving context and
// returns b's error; it returns nil when ctx ends first.
func stopOnLoss(ctx context.Context, b *batcher.Batcher, srv *server.Server, cancel func()) error {
	select {
	case <-b.Fatal():
	case <-ctx.Done():
		return nil
	}
	err := b.Err()
	srv.Config().Logger.Error("the accelerator failed: shutting down for a restart", "err", err, "exit_status", ExitDeviceLost)
	drain, cancelDrain := context.WithTimeout(context.Background(), lostDrain)
	defer cancelDrain()
	srv.Shutdown(drain) // health NOT_SERVING at once
	cancel()
	return err
}

// loadingBackend stands in for the batcher while the model loads: not ready,
// refusing work with batcher.ErrNotServing, then delegating to it.
type loadingBackend struct {
	b atomic.Pointer[server.Backend]
}

// set installs the loaded backend.
func (l *loadingBackend) set(b server.Backend) { l.b.Store(&b) }

func (l *loadingBackend) get() (server.Backend, error) {
	if b := l.b.Load(); b != nil {
		return *b, nil
	}
	return nil, fmt.Errorf("%w: the model is loading", batcher.ErrNotServing)
}

// SubmitChain delegates to the loaded backend.
func (l *loadingBackend) SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error) {
	b, err := l.get()
	if err != nil {
		return nil, err
	}
	return b.SubmitChain(ctx, req)
}

// SubmitGenerate delegates to the loaded backend.
func (l *loadingBackend) SubmitGenerate(ctx context.Context, req batcher.GenerateRequest) (<-chan batcher.Event, error) {
	b, err := l.get()
	if err != nil {
		return nil, err
	}
	return b.SubmitGenerate(ctx, req)
}

// Spec is the loaded model's, or the zero Spec while loading.
func (l *loadingBackend) Spec() engine.Spec {
	if b, err := l.get(); err == nil {
		return b.Spec()
	}
	return engine.Spec{}
}

// Ready reports whether the model is loaded and the backend ready.
func (l *loadingBackend) Ready() bool {
	b, err := l.get()
	return err == nil && b.Ready()
}
