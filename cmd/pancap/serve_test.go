package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"

	"github.com/pancap-serve/pancap/internal/app"
	"github.com/pancap-serve/pancap/internal/testsupport"
)

// buildPancap builds this command into a temp dir and returns its path.
func buildPancap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pancap")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// streamOutcome is how one stream of TestServeSIGTERMDrains ended.
type streamOutcome struct {
	final bool  // the final event arrived
	err   error // the stream's error; nil after a clean end
}

// startStream starts a StreamCaption, waits for its first event, and reads
// the rest in the background.
func startStream(t *testing.T, c pb.CaptionerClient, stages int32, maxNew int32) <-chan streamOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	stream, err := c.StreamCaption(ctx, &pb.CaptionRequest{
		Image: testsupport.PNG(t, 40, 20), Stages: stages, MaxNewTokens: []int32{maxNew, maxNew, maxNew, maxNew}[:stages], IgnoreEos: true,
	}, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		cancel()
		t.Fatal(err)
	}
	out := make(chan streamOutcome, 1)
	go func() {
		defer cancel()
		var o streamOutcome
		for {
			ev, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					o.err = err
				}
				out <- o
				return
			}
			o.final = o.final || ev.GetFinal() != nil
		}
	}()
	return out
}

// TestServeSIGTERMDrains runs the real binary: after SIGTERM, health turns
// NOT_SERVING, new calls get UNAVAILABLE, a stream that ends within
// --drain-timeout completes, the ones still running at the deadline get
// UNAVAILABLE, and the process exits 0 in time.
func TestServeSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const drain = 4 * time.Second
	bin := buildPancap(t)
	addr := testsupport.FreeAddr(t)
	var logs testsupport.SyncBuffer
	cmd := exec.Command(bin, "serve", "--addr", addr, "--drain-timeout", drain.String())
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, health := pb.NewCaptionerClient(conn), healthpb.NewHealthClient(conn)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never SERVING: %v %v\n%s", r, err, logs.String())
		}
	}

	long1 := startStream(t, client, 4, 3000) // ~12k tokens: far past the drain deadline
	long2 := startStream(t, client, 4, 3000)
	short := startStream(t, client, 1, 16) // well within it, even on a loaded machine
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	for deadline := time.Now().Add(drain); ; time.Sleep(5 * time.Millisecond) {
		r, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || r.Status == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("health still SERVING after SIGTERM")
		}
	}
	_, err = client.Caption(t.Context(), &pb.CaptionRequest{Image: testsupport.PNG(t, 40, 20), Stages: 1, MaxNewTokens: []int32{1}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a new call during the drain: %v, want UNAVAILABLE", err)
	}

	if o := <-short; o.err != nil || !o.final {
		t.Errorf("the short stream did not complete during the drain: %+v", o)
	}
	for i, ch := range []<-chan streamOutcome{long1, long2} {
		if o := <-ch; status.Code(o.err) != codes.Unavailable {
			t.Errorf("long stream %d at the drain deadline: final %v, err %v; want UNAVAILABLE", i, o.final, o.err)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
		if took := time.Since(sent); took > drain+5*time.Second {
			t.Errorf("exited %v after SIGTERM, drain timeout %v", took, drain)
		}
	case <-time.After(drain + 10*time.Second):
		t.Fatalf("still running %v after SIGTERM\n%s", drain+10*time.Second, logs.String())
	}
	if !strings.Contains(logs.String(), "drain deadline reached") {
		t.Errorf("no drain-deadline log line:\n%s", logs.String())
	}
}

func TestServeRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--max-stop-strings", "17"},
		{"--max-stop-bytes", "0"},
		{"--max-image-pixels", "-1"},
		{"--max-request-bytes", "0"},
		{"--kv-cache-dtype", "int8"},
		{"--max-queue", "0"},
		{"--max-queue", "-1"},
		{"--kv-cache-bytes", "-1"},
		{"--kv-cache-reserve-bytes", "-1"},
		{"--decode-budget-bytes", "0"},
	} {
		_, _, err := run(t, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
		if !errors.Is(err, app.ErrBadFlag) || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want app.ErrBadFlag naming the flag", args, err)
		}
	}
}

// TestServeBindsBeforeLoading: a busy port is reported before the model is
// even looked at (the model directory here does not exist, so a load would
// fail with a different error).
func TestServeBindsBeforeLoading(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, _, err = run(t, "serve", "--addr", lis.Addr().String(), "--model", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "load model") {
		t.Fatalf("serve on a busy port: %v, want the listen error before any load", err)
	}
}
