package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/pancap-serve/pancap/internal/testsupport"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// rawCodec sends []byte request messages as they are and reads replies as
// bytes: a client that can put any frame on the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return nil, fmt.Errorf("rawCodec: %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

// TestMalformedMessages sends request frames that do not parse as their
// message (truncated varint, a field of a wrong wire type, a length past
// the end, a string field that is not UTF-8) over a real TCP connection to
// the unary, server-streaming and health methods, with the right bearer
// token, and asserts INVALID_ARGUMENT naming the problem; the backend sees
// none of them, and a well-formed call on the same connection still works.
func TestMalformedMessages(t *testing.T) {
	const token = "s3cret"
	b := &fakeBackend{}
	b.ready.Store(true)
	logs := &testsupport.SyncBuffer{}
	srv, err := New(Config{AuthToken: token, Logger: slog.New(slog.NewTextHandler(logs, nil))}, b)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", testsupport.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+token)

	// A string field holding "\xff\xfe": GenerateRequest.prompt (2),
	// CaptionRequest.stop (4).
	promptNotUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xff, 0xfe})
	stopNotUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), []byte{0xff, 0xfe})
	for _, c := range []struct {
		name, method string
		stream       bool
		frame        []byte
		want         string
	}{
		{"truncated varint", "/pancap.v1.Captioner/Caption", false, []byte{0x18, 0x80}, "cannot parse invalid wire-format data"},
		{"length past the end", "/pancap.v1.Captioner/Caption", false, []byte{0x0a, 0x7f, 1, 2}, "cannot parse invalid wire-format data"},
		{"stop string not UTF-8", "/pancap.v1.Captioner/Caption", false, stopNotUTF8, "invalid UTF-8"},
		{"stream: truncated varint", "/pancap.v1.Captioner/StreamCaption", true, []byte{0x18, 0x80}, "cannot parse invalid wire-format data"},
		{"stream: length past the end", "/pancap.v1.Captioner/Generate", true, []byte{0x12, 0x05, 'a'}, "cannot parse invalid wire-format data"},
		{"stream: prompt not UTF-8", "/pancap.v1.Captioner/Generate", true, promptNotUTF8, "invalid UTF-8"},
		{"health: truncated tag", "/grpc.health.v1.Health/Check", false, []byte{0x80}, "grpc.health.v1.HealthCheckRequest: proto: cannot parse invalid wire-format data"},
	} {
		var err error
		if c.stream {
			var s grpc.ClientStream
			s, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, c.method, grpc.ForceCodec(rawCodec{}))
			if err == nil {
				if err = s.SendMsg(c.frame); err == nil {
					err = s.CloseSend()
				}
				var reply []byte
				if err == nil {
					err = s.RecvMsg(&reply)
				}
			}
		} else {
			var reply []byte
			err = conn.Invoke(ctx, c.method, c.frame, &reply, grpc.ForceCodec(rawCodec{}))
		}
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, err, codes.InvalidArgument, "malformed request message ")
			wantCode(t, err, codes.InvalidArgument, c.want)
		})
	}
	if b.lastReq.Load() != nil {
		t.Errorf("the backend got a request: %+v", b.lastReq.Load())
	}
	if !strings.Contains(logs.String(), "grpc.code=InvalidArgument") {
		t.Errorf("the malformed calls are not logged as InvalidArgument:\n%s", logs.String())
	}
	if _, err := pb.NewCaptionerClient(conn).Caption(ctx, &pb.CaptionRequest{Image: []byte("x")}); err != nil {
		t.Errorf("well-formed call after the malformed ones: %v", err)
	}
}

// TestRequestCodecTake checks that a recorded parse error is reported once
// and then forgotten, and that a message that parsed has none.
func TestRequestCodecTake(t *testing.T) {
	c := newRequestCodec()
	bad := &pb.CaptionRequest{}
	if err := c.proto.Unmarshal(nil, bad); err != nil {
		t.Fatal(err)
	}
	if err := c.take(bad); err != nil {
		t.Errorf("a message that parsed: %v", err)
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x18, 0x80})}, bad); err != nil {
		t.Fatalf("Unmarshal returned %v, want nil (the error is recorded)", err)
	}
	if err := c.take(bad); err == nil {
		t.Error("the parse error was not recorded")
	}
	if err := c.take(bad); err != nil {
		t.Errorf("the parse error was reported twice: %v", err)
	}
}

// TestMetricsAuth checks /metrics behind the bearer token: refused without
// it or with a wrong one (401, saying what to send), served with it, and
// served without it when MetricsNoAuth is set or auth is off.
func TestMetricsAuth(t *testing.T) {
	get := func(cfg Config, header string) *httptest.ResponseRecorder {
		t.Helper()
		h := start(t, cfg, nil, true)
		req := httptest.NewRequest("GET", "/metrics", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		rec := httptest.NewRecorder()
		h.srv.MetricsHandler().ServeHTTP(rec, req)
		return rec
	}
	auth := Config{AuthToken: "s3cret"}
	for _, c := range []struct {
		name   string
		cfg    Config
		header string
		code   int
	}{
		{"no token", auth, "", http.StatusUnauthorized},
		{"wrong token", auth, "Bearer nope", http.StatusUnauthorized},
		{"basic scheme", auth, "Basic s3cret", http.StatusUnauthorized},
		{"right token", auth, "Bearer s3cret", http.StatusOK},
		{"scheme in lower case", auth, "bearer s3cret", http.StatusOK},
		{"MetricsNoAuth", Config{AuthToken: "s3cret", MetricsNoAuth: true}, "", http.StatusOK},
		{"auth off", Config{}, "", http.StatusOK},
	} {
		rec := get(c.cfg, c.header)
		if rec.Code != c.code {
			t.Errorf("%s: status %d, want %d", c.name, rec.Code, c.code)
		}
		body := rec.Body.String()
		switch {
		case c.code == http.StatusOK && !strings.Contains(body, "go_goroutines"):
			t.Errorf("%s: no metrics served", c.name)
		case c.code != http.StatusOK && (strings.Contains(body, "go_goroutines") || !strings.Contains(body, "Authorization: Bearer <token>")):
			t.Errorf("%s: body %q", c.name, body)
		}
	}
}

// FuzzRequestCodec feeds arbitrary bytes to the codec as a CaptionRequest
// and a GenerateRequest: Unmarshal never fails, and take reports
// INVALID_ARGUMENT exactly when the proto codec refuses the bytes, once.
func FuzzRequestCodec(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x18, 0x80})
	f.Add([]byte{0x22, 0x02, 0xff, 0xfe})
	f.Add([]byte{0x0a, 0x01, 'x', 0x38, 0x01})
	c := newRequestCodec()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []proto.Message{&pb.CaptionRequest{}, &pb.GenerateRequest{}} {
			want := c.proto.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, proto.Clone(m))
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, m); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			got := c.take(m)
			if (got == nil) != (want == nil) || (got != nil && status.Code(got) != codes.InvalidArgument) {
				t.Fatalf("take %v, proto codec %v", got, want)
			}
			if got != nil && proto.Size(m) != 0 {
				t.Fatalf("a message that did not parse was left filled: %v", m)
			}
			if again := c.take(m); again != nil {
				t.Fatalf("reported twice: %v", again)
			}
		}
	})
}
