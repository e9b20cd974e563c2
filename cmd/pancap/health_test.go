package main

import (
	"net"
	"strings"
	"testing"
)

func TestHealthServing(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	out, _, err := run(t, "health", "--addr", addr, "--wait", "5s")
	if err != nil || strings.TrimSpace(out) != "SERVING" {
		t.Fatalf("out %q err %v", out, err)
	}
}

func TestHealthNoServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, _, err = run(t, "health", "--addr", addr, "--wait", "300ms")
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Fatalf("want UNAVAILABLE, got %v", err)
	}
}
