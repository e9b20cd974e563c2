package openai

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pancap-serve/pancap/server"
)

// stopGrace bounds how long Start's wait gives the handlers to return
// after the drain deadline has cancelled them.
const stopGrace = 5 * time.Second

// Start listens on cfg.Addr and serves the API for srv (TLS when srv has
// it) until ctx is done; then it drains as the gRPC server does: new
// connections are refused, requests in flight may finish within srv's
// DrainTimeout, the rest are cancelled. A bind error is returned at once.
// wait blocks until the drain has ended and returns a serving error, if
// any. With cfg.Addr empty nothing is served and wait returns nil.
func Start(ctx context.Context, cfg Config, srv *server.Server) (wait func() error, err error) {
	if cfg.Addr == "" {
		return func() error { return nil }, nil
	}
	api, err := New(cfg, srv)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	sc := srv.Config()
	if t := srv.TLSConfig(); t != nil {
		lis = tls.NewListener(lis, t.Clone())
	}
	hs := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(sc.Logger.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() {
		err := hs.Serve(lis)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	sc.Logger.Info("serving the OpenAI-compatible HTTP API", "addr", lis.Addr().String(), "tls", srv.TLSConfig() != nil,
		"metrics", cfg.Metrics, "image_url_hosts", cfg.ImageURLHosts)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		drainCtx, cancel := context.WithTimeout(context.Background(), sc.DrainTimeout)
		defer cancel()
		if err := hs.Shutdown(drainCtx); err != nil {
			sc.Logger.Warn("http drain deadline reached: cancelling requests in flight")
			hs.Close()
		}
		api.waitHandlers(stopGrace)
	}()
	return func() error {
		<-stopped
		return <-errc
	}, nil
}

// waitHandlers waits at most grace for the chat handlers in flight.
func (a *API) waitHandlers(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		a.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		a.log.Error("http requests still running after their cancellation; giving up on them", "waited", grace)
	}
}
