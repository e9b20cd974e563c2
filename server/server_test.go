package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/testsupport"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// script produces the events of one request; it runs in its own goroutine
// and must return when ctx is done.
type script func(ctx context.Context, emit func(batcher.Event) bool) batcher.Event

// fakeBackend is a scripted Backend.
type fakeBackend struct {
	ready   atomic.Bool
	chain   script // nil: okChain
	gen     script // nil: okGenerate
	submit  func() // called in the handler's goroutine before the script starts
	lastReq atomic.Pointer[batcher.ChainRequest]
	wg      sync.WaitGroup // running scripts
}

func (b *fakeBackend) run(ctx context.Context, s script) <-chan batcher.Event {
	ch := make(chan batcher.Event)
	b.wg.Go(func() {
		defer close(ch)
		emit := func(ev batcher.Event) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		done := s(ctx, emit)
		done.Kind = batcher.EventDone
		ch <- done // the server drains until close, so this never blocks forever
	})
	return ch
}

func (b *fakeBackend) SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error) {
	if b.submit != nil {
		b.submit()
	}
	b.lastReq.Store(&req)
	s := b.chain
	if s == nil {
		s = okChain(req)
	}
	return b.run(ctx, s), nil
}

func (b *fakeBackend) SubmitGenerate(ctx context.Context, req batcher.GenerateRequest) (<-chan batcher.Event, error) {
	s := b.gen
	if s == nil {
		s = okGenerate(req)
	}
	return b.run(ctx, s), nil
}

func (b *fakeBackend) Spec() engine.Spec {
	return engine.Spec{Name: "fake", Hidden: 64, VocabSize: 1000, ImageTokens: 16, ImageSize: 56,
		MaxContext: 4096, BOS: 1, EOS: 2, KVBlockSize: 16, KVBlocks: 64, DType: "float32", Device: "cpu", RandomWeights: true}
}

func (b *fakeBackend) Ready() bool { return b.ready.Load() }

var testEntity = chain.Entity{Tag: "person", Box: chain.Box{10, 20, 300, 400}, Pixel: chain.PixelBox{10, 13.3, 300, 266.8}, Stage: chain.Tag}

// okChain scripts a successful chain of req.Stages stages, two deltas each.
func okChain(req batcher.ChainRequest) script {
	return func(ctx context.Context, emit func(batcher.Event) bool) batcher.Event {
		n := req.Stages
		if n == 0 {
			n = 4
		}
		if !emit(batcher.Event{Kind: batcher.EventQueued, Position: 3}) ||
			!emit(batcher.Event{Kind: batcher.EventImageEncoded, Timing: batcher.Timing{Total: time.Millisecond}}) {
			return batcher.Event{Err: ctx.Err()}
		}
		res := &batcher.Result{Width: 1000, Height: 667}
		for st := chain.Stage(1); st <= chain.Stage(n); st++ {
			u := batcher.Usage{PromptTokens: 40, CachedTokens: 30, GeneratedTokens: 2}
			ok := emit(batcher.Event{Kind: batcher.EventStageStarted, Stage: st, Usage: u}) &&
				emit(batcher.Event{Kind: batcher.EventDelta, Stage: st, Text: "a ", TokenIDs: []int32{5}}) &&
				emit(batcher.Event{Kind: batcher.EventDelta, Stage: st, Text: "b", TokenIDs: []int32{6}}) &&
				emit(batcher.Event{Kind: batcher.EventStageFinished, Stage: st, Text: "a b", Entities: []chain.Entity{testEntity}, Usage: u})
			if !ok {
				return batcher.Event{Err: ctx.Err()}
			}
			res.Stages = append(res.Stages, batcher.StageResult{Stage: st, Text: "a b", TokenIDs: []int32{5, 6}, Usage: u, Finish: "eos"})
		}
		if n == 4 {
			res.Caption = "a b"
			res.Entities = []chain.Entity{testEntity}
			res.Mentions = []chain.Entity{testEntity}
		}
		return batcher.Event{Result: res}
	}
}

// okGenerate scripts a successful generation echoing the prompt.
func okGenerate(req batcher.GenerateRequest) script {
	return func(ctx context.Context, emit func(batcher.Event) bool) batcher.Event {
		if !emit(batcher.Event{Kind: batcher.EventStageStarted, Usage: batcher.Usage{PromptTokens: 7}}) ||
			!emit(batcher.Event{Kind: batcher.EventDelta, Text: req.Prompt, TokenIDs: []int32{9}}) ||
			!emit(batcher.Event{Kind: batcher.EventStageFinished, Text: req.Prompt}) {
			return batcher.Event{Err: ctx.Err()}
		}
		return batcher.Event{Result: &batcher.Result{Stages: []batcher.StageResult{{Text: req.Prompt, TokenIDs: []int32{9}, Finish: "length"}}}}
	}
}

// blockUntilCancel scripts a request that queues and then waits for its
// context, closing cancelled when it sees it.
func blockUntilCancel(cancelled chan<- struct{}) script {
	return func(ctx context.Context, emit func(batcher.Event) bool) batcher.Event {
		emit(batcher.Event{Kind: batcher.EventQueued, Position: 0})
		<-ctx.Done()
		close(cancelled)
		return batcher.Event{Err: fmt.Errorf("%w: %w", batcher.ErrInternal, ctx.Err())}
	}
}

// harness is a server on bufconn with a client connection to it.
type harness struct {
	srv     *Server
	backend *fakeBackend
	conn    *grpc.ClientConn
	client  pb.CaptionerClient
	logs    *testsupport.SyncBuffer
}

// start serves cfg over bufconn with a ready fakeBackend (unless ready is
// false) and closes everything at the end of the test.
func start(t *testing.T, cfg Config, b *fakeBackend, ready bool) *harness {
	t.Helper()
	if b == nil {
		b = &fakeBackend{}
	}
	b.ready.Store(ready)
	logs := &testsupport.SyncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		b.wg.Wait()
	})
	return &harness{srv: srv, backend: b, conn: conn, client: pb.NewCaptionerClient(conn), logs: logs}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code, msgPart string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msgPart)
	}
}

func TestCaptionUnary(t *testing.T) {
	h := start(t, Config{}, nil, true)
	resp, err := h.client.Caption(ctxT(t), &pb.CaptionRequest{
		Image: []byte("img"), RequestId: "r1", MaxNewTokens: []int32{10, 20},
		Sampling: &pb.SamplingParams{Temperature: 0.5, TopP: 0.9, TopK: 5, Seed: 7}, Stop: []string{"END"}, IgnoreEos: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestId != "r1" || resp.Caption != "a b" || len(resp.Stages) != 4 || resp.ImageWidth != 1000 {
		t.Fatalf("unexpected response %v", resp)
	}
	s2 := resp.Stages[1]
	if s2.Stage != pb.Stage_STAGE_TAG || s2.Usage.CachedTokens != 30 || s2.FinishReason != pb.FinishReason_FINISH_REASON_EOS {
		t.Fatalf("stage 2: %v", s2)
	}
	e := resp.Entities[0]
	if e.Tag != "person" || e.Box.X2 != 300 || e.PixelBox.Y1 != 13.3 || e.Stage != pb.Stage_STAGE_TAG {
		t.Fatalf("entity: %v", e)
	}
	got := *h.backend.lastReq.Load()
	if got.MaxNewTokens != [4]int{10, 20, 0, 0} || got.Stages != 0 || got.Sampling.TopK != 5 || got.Sampling.Seed != 7 ||
		!got.IgnoreEOS || got.Stop[0] != "END" || got.RequestID != "r1" {
		t.Fatalf("request mapped to %+v", got)
	}
}

func TestStreamCaption(t *testing.T) {
	h := start(t, Config{}, nil, true)
	stream, err := h.client.StreamCaption(ctxT(t), &pb.CaptionRequest{Image: []byte("img"), Stages: 2})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var final *pb.CaptionResponse
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch e := ev.Event.(type) {
		case *pb.CaptionEvent_Queued:
			kinds = append(kinds, fmt.Sprintf("queued:%d", e.Queued.Position))
		case *pb.CaptionEvent_ImageEncoded:
			kinds = append(kinds, "encoded")
		case *pb.CaptionEvent_StageStarted:
			kinds = append(kinds, fmt.Sprintf("start%d:%d", e.StageStarted.Stage, e.StageStarted.PromptTokens))
		case *pb.CaptionEvent_TokenDelta:
			kinds = append(kinds, fmt.Sprintf("delta%d:%q", e.TokenDelta.Stage, e.TokenDelta.Text))
		case *pb.CaptionEvent_StageFinished:
			kinds = append(kinds, fmt.Sprintf("end%d:%d", e.StageFinished.Stage, len(e.StageFinished.Entities)))
		case *pb.CaptionEvent_Final:
			final = e.Final
			kinds = append(kinds, "final")
		}
	}
	want := `queued:3 encoded start1:40 delta1:"a " delta1:"b" end1:1 start2:40 delta2:"a " delta2:"b" end2:1 final`
	if g := strings.Join(kinds, " "); g != want {
		t.Fatalf("events:\n got %s\nwant %s", g, want)
	}
	if len(final.Stages) != 2 || final.Caption != "" {
		t.Fatalf("final: %v", final)
	}
	if h.backend.lastReq.Load().Stages != 2 {
		t.Fatal("stages not passed on")
	}
}

func TestGenerate(t *testing.T) {
	h := start(t, Config{}, nil, true)
	stream, err := h.client.Generate(ctxT(t), &pb.GenerateRequest{Prompt: "hello", RequestId: "g"})
	if err != nil {
		t.Fatal(err)
	}
	var text string
	var final *pb.GenerateResult
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d := ev.GetTokenDelta(); d != nil {
			text += d.Text
		}
		if f := ev.GetFinal(); f != nil {
			final = f
		}
	}
	if text != "hello" || final.GetText() != "hello" || final.FinishReason != pb.FinishReason_FINISH_REASON_LENGTH || final.RequestId != "g" {
		t.Fatalf("text %q final %v", text, final)
	}
}

func TestModelInfo(t *testing.T) {
	h := start(t, Config{Limits: batcher.Limits{MaxNewTokens: 2000}}, nil, true)
	info, err := h.client.GetModelInfo(ctxT(t), &pb.GetModelInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "fake" || info.Architecture.ImageTokens != 16 || !info.RandomWeights ||
		info.Limits.MaxNewTokens != 2000 || info.Limits.MaxRequestBytes != DefaultMaxRecvMsgBytes {
		t.Fatalf("info %v", info)
	}
}

func TestCancelMidStream(t *testing.T) {
	cancelled := make(chan struct{})
	h := start(t, Config{}, &fakeBackend{chain: blockUntilCancel(cancelled)}, true)
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := h.client.StreamCaption(ctx, &pb.CaptionRequest{Image: []byte("img")})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetQueued() == nil {
		t.Fatalf("first event %v, %v", ev, err)
	}
	cancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend never saw the cancellation")
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.Canceled, "")
	h.backend.wg.Wait() // the script ended: its resources are released
	// The server logs the call when the handler returns; wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.logs.String(), "grpc.code=Canceled") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "grpc.code=Canceled") {
		t.Fatalf("the cancelled call was not logged:\n%s", logs)
	}
	if strings.Contains(logs, "level=ERROR") {
		t.Fatalf("a client cancellation was logged as an error:\n%s", logs)
	}
}

func TestDeadlineExceeded(t *testing.T) {
	cancelled := make(chan struct{})
	h := start(t, Config{}, &fakeBackend{chain: blockUntilCancel(cancelled)}, true)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("img")})
	wantCode(t, err, codes.DeadlineExceeded, "")
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's work was not stopped at the deadline")
	}
}

func TestInvalidArgument(t *testing.T) {
	h := start(t, Config{Limits: batcher.Limits{MaxNewTokens: 100}}, nil, true)
	ctx := ctxT(t)
	cases := []struct {
		req   *pb.CaptionRequest
		field string
	}{
		{&pb.CaptionRequest{}, "image: required"},
		{&pb.CaptionRequest{Image: []byte("x"), Sampling: &pb.SamplingParams{TopP: 1.5}}, "sampling.top_p: must be in [0, 1]"},
		{&pb.CaptionRequest{Image: []byte("x"), Sampling: &pb.SamplingParams{Temperature: -1}}, "sampling.temperature:"},
		{&pb.CaptionRequest{Image: []byte("x"), Sampling: &pb.SamplingParams{TopK: -1}}, "sampling.top_k:"},
		{&pb.CaptionRequest{Image: []byte("x"), Stages: 5}, "stages: must be in [0, 4]"},
		{&pb.CaptionRequest{Image: []byte("x"), MaxNewTokens: []int32{1, 2, 3, 4, 5}}, "max_new_tokens: at most 4"},
		{&pb.CaptionRequest{Image: []byte("x"), MaxNewTokens: []int32{1, 101}}, "max_new_tokens[1]: must be in [0, 100]"},
		{&pb.CaptionRequest{Image: []byte("x"), Stop: []string{"ok", ""}}, "stop[1]:"},
		{&pb.CaptionRequest{Image: []byte("x"), RequestId: strings.Repeat("r", 200)}, "request_id:"},
	}
	for _, c := range cases {
		_, err := h.client.Caption(ctx, c.req)
		wantCode(t, err, codes.InvalidArgument, c.field)
	}
	// Streams are validated too.
	stream, err := h.client.Generate(ctx, &pb.GenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.InvalidArgument, "prompt: required")
	if h.backend.lastReq.Load() != nil {
		t.Fatal("an invalid request reached the backend")
	}
}

func TestBackendErrorsMapped(t *testing.T) {
	for _, c := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("decode: %w", batcher.ErrInvalidImage), codes.InvalidArgument},
		{batcher.ErrPromptTooLong, codes.InvalidArgument},
		{fmt.Errorf("%w: 64 waiting", batcher.ErrQueueFull), codes.ResourceExhausted},
		{batcher.ErrNotServing, codes.Unavailable},
		{errors.New("boom"), codes.Internal},
	} {
		b := &fakeBackend{chain: func(context.Context, func(batcher.Event) bool) batcher.Event { return batcher.Event{Err: c.err} }}
		h := start(t, Config{}, b, true)
		_, err := h.client.Caption(ctxT(t), &pb.CaptionRequest{Image: []byte("x")})
		wantCode(t, err, c.code, c.err.Error())
	}
}

func TestHealthAndNotReady(t *testing.T) {
	h := start(t, Config{}, nil, false)
	hc := healthpb.NewHealthClient(h.conn)
	ctx := ctxT(t)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "pancap.v1.Captioner"})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if s := check(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before ready: %v", s)
	}
	_, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x")})
	wantCode(t, err, codes.Unavailable, "not ready")

	h.backend.ready.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for check() != healthpb.HealthCheckResponse_SERVING {
		if time.Now().After(deadline) {
			t.Fatal("health never turned SERVING")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	h := start(t, Config{AuthToken: "s3cret"}, nil, true)
	ctx := ctxT(t)
	req := &pb.CaptionRequest{Image: []byte("x")}
	_, err := h.client.Caption(ctx, req)
	wantCode(t, err, codes.Unauthenticated, "")
	_, err = h.client.Caption(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong"), req)
	wantCode(t, err, codes.Unauthenticated, "invalid bearer token")
	if _, err := h.client.Caption(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret"), req); err != nil {
		t.Fatal(err)
	}
	r, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token: %v, %v", r, err)
	}
}

func TestPanicRecovered(t *testing.T) {
	var calls atomic.Int32
	b := &fakeBackend{submit: func() {
		if calls.Add(1) == 1 {
			panic("scripted panic")
		}
	}}
	h := start(t, Config{}, b, true)
	ctx := ctxT(t)
	_, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x")})
	wantCode(t, err, codes.Internal, "")
	if _, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x")}); err != nil {
		t.Fatalf("the server stopped serving after a panic: %v", err)
	}
	if !strings.Contains(h.logs.String(), "scripted panic") {
		t.Fatal("the panic was not logged")
	}
}

func TestMessageTooLarge(t *testing.T) {
	h := start(t, Config{MaxRecvMsgBytes: 1024}, nil, true)
	_, err := h.client.Caption(ctxT(t), &pb.CaptionRequest{Image: make([]byte, 2048)})
	wantCode(t, err, codes.ResourceExhausted, "")
}

func TestRateLimit(t *testing.T) {
	h := start(t, Config{RateLimit: 0.001, RateBurst: 1}, nil, true)
	ctx := ctxT(t)
	if _, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x")})
	wantCode(t, err, codes.ResourceExhausted, "rate limit")
	if _, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health was rate limited: %v", err)
	}
}

func TestReflection(t *testing.T) {
	h := start(t, Config{AuthToken: "tok"}, nil, true)
	rc, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	rc.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "pancap.v1.Captioner") {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestMetrics(t *testing.T) {
	h := start(t, Config{}, nil, true)
	if _, err := h.client.Caption(ctxT(t), &pb.CaptionRequest{Image: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `grpc_server_handled_total{grpc_code="OK",grpc_method="Caption",grpc_service="pancap.v1.Captioner",grpc_type="unary"} 1`
	if !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("metrics lack %s", want)
	}
}

func TestShutdownCancelsCallsAfterDrain(t *testing.T) {
	cancelled := make(chan struct{})
	h := start(t, Config{}, &fakeBackend{chain: blockUntilCancel(cancelled)}, true)
	stream, err := h.client.StreamCaption(ctxT(t), &pb.CaptionRequest{Image: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	h.srv.Shutdown(ctx)
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight was not cancelled after the drain deadline")
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatal("the stream went on after shutdown")
	}
}

func TestRunAndConfigErrors(t *testing.T) {
	if _, err := New(Config{TLSCertFile: "x.pem"}, &fakeBackend{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("cert without key: %v", err)
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("nil backend: %v", err)
	}
	srv, err := New(Config{Addr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
