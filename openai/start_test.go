package openai

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pancap-serve/pancap/internal/testsupport"
	"github.com/pancap-serve/pancap/server"
)

// TestStartDrains runs Start's whole life: serving, a bind error, then a
// drain that refuses new connections, reports NOT_SERVING and cancels the
// request still running at the drain deadline.
func TestStartDrains(t *testing.T) {
	b := readyBackend()
	b.block = true
	srv, err := server.New(server.Config{DrainTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, b)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer http.DefaultClient.CloseIdleConnections()
	defer b.wg.Wait()
	defer srv.Shutdown(context.Background())

	addr := testsupport.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait, err := Start(ctx, Config{Addr: addr}, srv)
	if err != nil {
		t.Fatal(err)
	}
	other, err := server.New(server.Config{Logger: slog.New(slog.DiscardHandler)}, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, Config{Addr: addr}, other); err == nil || !strings.Contains(err.Error(), "listen "+addr) {
		t.Errorf("Start on a busy address: %v", err)
	}
	url := "http://" + addr
	waitFor(t, func() bool { return get(url+"/health") == http.StatusOK })

	body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":%q}}]}]}`, ModelID, pngDataURI(t))
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	srv.Shutdown(context.Background()) // the gRPC side drains: health turns NOT_SERVING
	if st := get(url + "/health"); st != http.StatusServiceUnavailable {
		t.Errorf("health while draining: %d", st)
	}
	cancel()
	start := time.Now()
	if err := wait(); err != nil {
		t.Errorf("wait: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the drain took %v with a 200ms deadline", d)
	}
	select {
	case <-b.cancelled:
	default:
		t.Error("the request in flight was not cancelled at the drain deadline")
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Error("a new connection was accepted after the drain")
	}
	if w, err := Start(context.Background(), Config{}, srv); err != nil || w() != nil {
		t.Errorf("Start without an address: %v", err)
	}
}

// get returns the status of GET url, 0 when it fails.
func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls ok for up to 5 seconds.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestStartTLS checks that the HTTP API serves TLS when the server has it,
// with the server's certificate (here httptest's, written to PEM files).
func TestStartTLS(t *testing.T) {
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	defer http.DefaultClient.CloseIdleConnections()
	dir := t.TempDir()
	key, err := x509.MarshalPKCS8PrivateKey(ts.TLS.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}, keyFile: {Type: "PRIVATE KEY", Bytes: key}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, Logger: slog.New(slog.DiscardHandler)}, readyBackend())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := testsupport.FreeAddr(t)
	wait, err := Start(ctx, Config{Addr: addr}, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		wait()
	}()
	resp, err := ts.Client().Get("https://" + addr + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if st := get("http://" + addr + "/v1/models"); st == http.StatusOK {
		t.Error("plain HTTP was answered on a TLS server")
	}
}
