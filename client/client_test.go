package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeServer scripts the server side.
type fakeServer struct {
	pb.UnimplementedCaptionerServer
	calls       atomic.Int32
	unavailable int32      // fail the first calls with UNAVAILABLE
	code        codes.Code // then fail with this code unless OK
	block       bool       // wait for the call's context instead of answering
	auth        atomic.Value
	streamDone  chan error // StreamCaption reports how it ended
}

func (f *fakeServer) Caption(ctx context.Context, req *pb.CaptionRequest) (*pb.CaptionResponse, error) {
	n := f.calls.Add(1)
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md["authorization"]) > 0 {
		f.auth.Store(md["authorization"][0])
	}
	if n <= f.unavailable {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	if f.code != codes.OK {
		return nil, status.Error(f.code, "scripted")
	}
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &pb.CaptionResponse{RequestId: req.RequestId, Caption: "a caption"}, nil
}

func (f *fakeServer) StreamCaption(req *pb.CaptionRequest, stream pb.Captioner_StreamCaptionServer) error {
	var err error
	defer func() { f.streamDone <- err }()
	for i := range 3 {
		if err = stream.Send(&pb.CaptionEvent{Event: &pb.CaptionEvent_Queued{Queued: &pb.Queued{Position: int32(2 - i)}}}); err != nil {
			return err
		}
	}
	if f.block {
		<-stream.Context().Done()
		err = stream.Context().Err()
		return err
	}
	err = stream.Send(&pb.CaptionEvent{Event: &pb.CaptionEvent_Final{Final: &pb.CaptionResponse{Caption: "done"}}})
	return err
}

func (f *fakeServer) Generate(req *pb.GenerateRequest, stream pb.Captioner_GenerateServer) error {
	if err := stream.Send(&pb.GenerateEvent{Event: &pb.GenerateEvent_TokenDelta{TokenDelta: &pb.TokenDelta{Text: req.Prompt}}}); err != nil {
		return err
	}
	return status.Error(codes.ResourceExhausted, "queue full")
}

func (f *fakeServer) GetModelInfo(context.Context, *pb.GetModelInfoRequest) (*pb.ModelInfo, error) {
	return &pb.ModelInfo{Name: "fake"}, nil
}

// dial serves f over bufconn and dials it with opts.
func dial(t *testing.T, f *fakeServer, opts ...Option) *Client {
	t.Helper()
	f.streamDone = make(chan error, 1)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterCaptionerServer(srv, f)
	go srv.Serve(lis)
	opts = append(opts, WithDialOptions(grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	})))
	c, err := Dial("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Stop()
	})
	return c
}

func TestCaptionWithToken(t *testing.T) {
	f := &fakeServer{}
	c := dial(t, f, WithToken("tok"))
	resp, err := c.Caption(t.Context(), &pb.CaptionRequest{RequestId: "x"})
	if err != nil || resp.Caption != "a caption" || resp.RequestId != "x" {
		t.Fatalf("%v, %v", resp, err)
	}
	if got := f.auth.Load(); got != "Bearer tok" {
		t.Fatalf("authorization %v", got)
	}
	info, err := c.ModelInfo(t.Context())
	if err != nil || info.Name != "fake" {
		t.Fatalf("%v, %v", info, err)
	}
}

func TestRetryUnavailable(t *testing.T) {
	f := &fakeServer{unavailable: 2}
	c := dial(t, f, WithRetry(4, time.Millisecond, 5*time.Millisecond))
	if _, err := c.Caption(t.Context(), &pb.CaptionRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
}

func TestNoRetryOtherCodes(t *testing.T) {
	f := &fakeServer{code: codes.InvalidArgument}
	c := dial(t, f, WithRetry(4, time.Millisecond, 5*time.Millisecond))
	_, err := c.Caption(t.Context(), &pb.CaptionRequest{})
	if status.Code(err) != codes.InvalidArgument || f.calls.Load() != 1 {
		t.Fatalf("%v after %d attempts", err, f.calls.Load())
	}
}

func TestRetryGivesUp(t *testing.T) {
	f := &fakeServer{unavailable: 100}
	c := dial(t, f, WithRetry(2, time.Millisecond, 5*time.Millisecond))
	_, err := c.Caption(t.Context(), &pb.CaptionRequest{})
	if status.Code(err) != codes.Unavailable || f.calls.Load() != 2 {
		t.Fatalf("%v after %d attempts", err, f.calls.Load())
	}
}

func TestDefaultDeadline(t *testing.T) {
	f := &fakeServer{block: true}
	c := dial(t, f, WithTimeout(50*time.Millisecond))
	_, err := c.Caption(t.Context(), &pb.CaptionRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v", err)
	}
}

func TestStreamCaption(t *testing.T) {
	c := dial(t, &fakeServer{})
	var positions []int32
	var final string
	for ev, err := range c.StreamCaption(t.Context(), &pb.CaptionRequest{}) {
		if err != nil {
			t.Fatal(err)
		}
		if q := ev.GetQueued(); q != nil {
			positions = append(positions, q.Position)
		}
		if f := ev.GetFinal(); f != nil {
			final = f.Caption
		}
	}
	if len(positions) != 3 || positions[2] != 0 || final != "done" {
		t.Fatalf("positions %v final %q", positions, final)
	}
}

func TestStreamStopEarlyCancels(t *testing.T) {
	f := &fakeServer{block: true}
	c := dial(t, f)
	for ev, err := range c.StreamCaption(t.Context(), &pb.CaptionRequest{}) {
		if err != nil || ev.GetQueued() == nil {
			t.Fatalf("%v, %v", ev, err)
		}
		break
	}
	select {
	case err := <-f.streamDone:
		// The cancellation reaches the server either while it waits
		// (context.Canceled) or while it still sends (a Canceled status).
		if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
			t.Fatalf("server stream ended with %v, want a cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stopping the iteration did not cancel the call")
	}
}

func TestGenerateError(t *testing.T) {
	c := dial(t, &fakeServer{})
	var texts []string
	var last error
	for ev, err := range c.Generate(t.Context(), &pb.GenerateRequest{Prompt: "hi"}) {
		if err != nil {
			last = err
			continue
		}
		texts = append(texts, ev.GetTokenDelta().GetText())
	}
	if len(texts) != 1 || texts[0] != "hi" || status.Code(last) != codes.ResourceExhausted {
		t.Fatalf("texts %v, err %v", texts, last)
	}
}

func TestDialRefusesMalformedAddress(t *testing.T) {
	for _, addr := range []string{"notaport", "127.0.0.1", "localhost:http", "host:99999", ""} {
		if c, err := Dial(addr); err == nil || !strings.Contains(err.Error(), "host:port") {
			if c != nil {
				c.Close()
			}
			t.Errorf("Dial(%q): %v, want an error naming host:port", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:50051", "[::1]:1", "dns:///localhost:50051", "unix:///tmp/x.sock"} {
		c, err := Dial(addr)
		if err != nil {
			t.Errorf("Dial(%q): %v", addr, err)
			continue
		}
		c.Close()
	}
}
