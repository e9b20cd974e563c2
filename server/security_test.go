package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/model/imageproc"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"

	"github.com/pancap-serve/pancap/internal/testsupport"
)

func TestTokenNeverLogged(t *testing.T) {
	const token, wrong = "s3cret-Token-4f1d", "wrong-Token-9a7e"
	h := start(t, Config{AuthToken: token}, nil, true)
	ctx := ctxT(t)
	req := &pb.CaptionRequest{Image: []byte("x"), RequestId: "tok-test"}
	if _, err := h.client.Caption(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), req); err != nil {
		t.Fatal(err)
	}
	_, err := h.client.Caption(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+wrong), req)
	wantCode(t, err, codes.Unauthenticated, "invalid bearer token")
	logs := h.logs.String()
	if !strings.Contains(logs, "finished call") || !strings.Contains(logs, "Unauthenticated") {
		t.Fatalf("the calls were not logged:\n%s", logs)
	}
	for _, secret := range []string{token, wrong} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the logs contain the token %q:\n%s", secret, logs)
		}
	}
}

func TestRequestIDSanitisedAndLogged(t *testing.T) {
	h := start(t, Config{}, nil, true)
	ctx := ctxT(t)
	if _, err := h.client.Caption(ctx, &pb.CaptionRequest{Image: []byte("x"), RequestId: "id-1\x1b[31m\nfake=1"}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("m", 300)
	stream, err := h.client.Generate(metadata.AppendToOutgoingContext(ctx, RequestIDHeader, "hdr-"+long), &pb.GenerateRequest{Prompt: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `request_id="id-1?[31m?fake=1"`) || strings.Contains(logs, "\x1b") {
		t.Fatalf("request_id not sanitised in the log:\n%s", logs)
	}
	if want := "request_id=hdr-" + long[:batcher.MaxRequestIDBytes-4] + " "; !strings.Contains(logs, want) {
		t.Fatalf("x-request-id not logged cut to %d bytes:\n%s", batcher.MaxRequestIDBytes, logs)
	}
}

func TestSanitizeRequestID(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"abc-123_X.y":            "abc-123_X.y",
		"a\tb\x7fc":              "a?b?c",
		"é":                      "?",
		strings.Repeat("z", 200): strings.Repeat("z", batcher.MaxRequestIDBytes),
	} {
		if got := sanitizeRequestID(in); got != want {
			t.Errorf("sanitizeRequestID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestModelInfoLimits(t *testing.T) {
	h := start(t, Config{Image: imageproc.Limits{MaxBytes: 1000, MaxPixels: 2000, MaxFrames: 3}, Limits: batcher.Limits{MaxPromptBytes: 40}}, nil, true)
	info, err := h.client.GetModelInfo(ctxT(t), &pb.GetModelInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l := info.Limits
	if l.MaxImageBytes != 1000 || l.MaxImagePixels != 2000 || l.MaxImageFrames != 3 || l.MaxPromptBytes != 40 ||
		l.MaxContextTokens != 4096 || l.MaxRequestIdBytes != batcher.MaxRequestIDBytes {
		t.Fatalf("limits %v", l)
	}
	ctx := ctxT(t)
	_, err = h.client.Caption(ctx, &pb.CaptionRequest{Image: make([]byte, 1001)})
	wantCode(t, err, codes.InvalidArgument, "image: 1001 bytes, limit 1000")
	stream, err := h.client.Generate(ctx, &pb.GenerateRequest{Prompt: strings.Repeat("p", 41)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "prompt: at most 40 bytes, got 41")
}

func TestMutualTLSForGRPCAndMetrics(t *testing.T) {
	certFile, keyFile, serverPool := selfSigned(t, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey, _ := selfSigned(t, x509.ExtKeyUsageClientAuth)
	if _, err := New(Config{TLSClientCAFile: clientCert}, &fakeBackend{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("client CA without TLS: %v", err)
	}
	if _, err := New(Config{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSClientCAFile: keyFile}, &fakeBackend{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("client CA file without a certificate: %v", err)
	}
	b := &fakeBackend{}
	b.ready.Store(true)
	addr, metricsAddr := testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	srv, err := New(Config{Addr: addr, MetricsAddr: metricsAddr, TLSCertFile: certFile, TLSKeyFile: keyFile,
		TLSClientCAFile: clientCert, DrainTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)}, b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		b.wg.Wait()
	}()

	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &tls.Config{RootCAs: serverPool, ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	noCert := &tls.Config{RootCAs: serverPool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	call := func(conf *tls.Config) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			return err
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer ccancel()
		_, err = pb.NewCaptionerClient(conn).GetModelInfo(cctx, &pb.GetModelInfoRequest{}, grpc.WaitForReady(true))
		return err
	}
	if err := call(withCert); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	short, scancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer scancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(noCert)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.NewCaptionerClient(conn).GetModelInfo(short, &pb.GetModelInfoRequest{}); err == nil {
		t.Fatal("gRPC without a client certificate succeeded")
	}
	conn.Close()

	get := func(conf *tls.Config) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 5 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + metricsAddr + "/metrics")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	body, err := get(withCert)
	if err != nil || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics over mTLS: %v, %.200s", err, body)
	}
	if _, err := get(noCert); err == nil {
		t.Fatal("metrics without a client certificate succeeded")
	}
}
