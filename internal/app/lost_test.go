package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/testsupport"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// losingEngine is the embedded model whose Forward, once lose is set, fails
// as a model on a lost accelerator does.
type losingEngine struct {
	engine.Engine
	lose atomic.Bool
}

func (e *losingEngine) Forward(batch []engine.Chunk) (engine.Output, error) {
	if e.lose.Load() {
		return engine.Output{}, fmt.Errorf("%w: injected illegal address", engine.ErrDeviceLost)
	}
	return e.Engine.Forward(batch)
}

// TestDeviceLostEndsServe: `pancap serve`'s wiring over a model whose
// accelerator fails mid-stream. The calls in flight end with UNAVAILABLE
// naming the failure, gRPC health turns NOT_SERVING (and with it the HTTP
// /health), and Serve returns an error whose exit status is 3.
func TestDeviceLostEndsServe(t *testing.T) {
	cfg := NewServeConfig(pflag.NewFlagSet("serve", pflag.ContinueOnError))
	cfg.Addr, cfg.HTTP.Addr, cfg.LogLevel = testsupport.FreeAddr(t), testsupport.FreeAddr(t), "error"
	var eng *losingEngine
	load := func(ctx context.Context, cfg ServeConfig) (engine.Engine, error) {
		m, err := loadEngine(ctx, cfg)
		if err != nil {
			return nil, err
		}
		eng = &losingEngine{Engine: m}
		return eng, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, *cfg, load) }()

	conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	watchCtx, endWatch := context.WithCancel(t.Context())
	defer endWatch()
	watch, err := hc.Watch(watchCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)) // serve may not listen yet
	if err != nil {
		t.Fatal(err)
	}
	watchFor(t, watch, healthpb.HealthCheckResponse_SERVING)
	if code := httpHealth(t, cfg.HTTP.Addr); code != http.StatusOK {
		t.Fatalf("HTTP /health while serving: %d", code)
	}

	// Two long calls: one running, one queued behind it or beside it.
	client := pb.NewCaptionerClient(conn)
	var streams []pb.Captioner_StreamCaptionClient
	for range 2 {
		s, err := client.StreamCaption(t.Context(), &pb.CaptionRequest{
			Image: testsupport.PNG(t, 40, 20), Stages: 4, MaxNewTokens: []int32{1024, 1024, 1024, 1024}, IgnoreEos: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	eng.lose.Store(true)
	for i, s := range streams {
		err := drain(s.Recv)
		if st, _ := status.FromError(err); st.Code() != codes.Unavailable ||
			!strings.Contains(st.Message(), "the accelerator failed") || !strings.Contains(st.Message(), "injected illegal address") {
			t.Errorf("call %d in flight at the failure: %v, want UNAVAILABLE naming the failure", i, err)
		}
	}
	watchFor(t, watch, healthpb.HealthCheckResponse_NOT_SERVING)
	// The server drains (the watch holds it): HTTP still answers, 503.
	if code := httpHealth(t, cfg.HTTP.Addr); code != http.StatusServiceUnavailable {
		t.Errorf("HTTP /health after the failure: %d, want 503", code)
	}
	endWatch()
	select {
	case err := <-served:
		if !errors.Is(err, engine.ErrDeviceLost) || ExitStatus(err) != ExitDeviceLost || ExitDeviceLost != 3 {
			t.Errorf("Serve returned %v (exit status %d), want the lost device (exit status 3)", err, ExitStatus(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the accelerator failed")
	}
}

// watchFor reads health updates until one reports want.
func watchFor(t *testing.T, watch healthpb.Health_WatchClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for {
		r, err := watch.Recv()
		if err != nil {
			t.Fatalf("health watch ended before %v: %v", want, err)
		}
		if r.Status == want {
			return
		}
	}
}

// httpHealth returns the status code of GET /health at addr.
func httpHealth(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestExitStatus(t *testing.T) {
	for err, want := range map[error]int{
		nil:                    0,
		errors.New("bad flag"): 1,
		engine.ErrDeviceLost:   3,
		fmt.Errorf("serve: %w", engine.ErrDeviceLost): 3,
	} {
		if got := ExitStatus(err); got != want {
			t.Errorf("ExitStatus(%v) = %d, want %d", err, got, want)
		}
	}
}
