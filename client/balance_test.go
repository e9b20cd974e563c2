package client

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// serveTCP serves f on a loopback port and returns its address and server.
func serveTCP(t *testing.T, f *fakeServer) (string, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterCaptionerServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), srv
}

// TestRetryLargeRequest: a request larger than grpc's default retry buffer
// (256 KiB) is still retried on UNAVAILABLE.
func TestRetryLargeRequest(t *testing.T) {
	f := &fakeServer{unavailable: 1}
	c := dial(t, f, WithRetry(3, time.Millisecond, 5*time.Millisecond))
	img := make([]byte, 1<<20)
	if _, err := c.Caption(t.Context(), &pb.CaptionRequest{Image: img}); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
}

// TestAddressListRoundRobin: calls to a comma-separated list reach every
// server, and go on succeeding after one of them drains and stops.
func TestAddressListRoundRobin(t *testing.T) {
	fakes := []*fakeServer{{}, {}, {}}
	var addrs []string
	var srvs []*grpc.Server
	for _, f := range fakes {
		a, s := serveTCP(t, f)
		addrs, srvs = append(addrs, a), append(srvs, s)
	}
	c, err := Dial(strings.Join(addrs, ","), WithRetry(5, time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 30 {
		if _, err := c.Caption(t.Context(), &pb.CaptionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range fakes {
		if f.calls.Load() == 0 {
			t.Fatalf("server %d got no call of 30: %d %d %d", i, fakes[0].calls.Load(), fakes[1].calls.Load(), fakes[2].calls.Load())
		}
	}
	srvs[0].GracefulStop()
	before := fakes[0].calls.Load()
	for range 20 {
		if _, err := c.Caption(t.Context(), &pb.CaptionRequest{}); err != nil {
			t.Fatalf("a call failed after one server stopped: %v", err)
		}
	}
	if got := fakes[0].calls.Load(); got != before {
		t.Fatalf("the stopped server got %d more calls", got-before)
	}
}

func TestAddressListErrors(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:1,,127.0.0.1:2", "dns:///a:1,b:2", "127.0.0.1:1,"} {
		if c, err := Dial(addr); err == nil {
			c.Close()
			t.Errorf("Dial(%q) accepted a malformed list", addr)
		}
	}
}
