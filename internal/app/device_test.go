package app

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]int{"": 0, "cpu": 0, "cuda": 0, "cuda:3": 3} {
		if _, n, err := parseDevice(in); err != nil || n != want {
			t.Errorf("parseDevice(%q) = %d, %v", in, n, err)
		}
	}
	for _, in := range []string{"gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0"} {
		if _, _, err := parseDevice(in); err == nil {
			t.Errorf("parseDevice(%q): no error", in)
		}
	}
}

// lostAfter is a backend that is lost once lost is set.
type lostAfter struct{ lost atomic.Pointer[error] }

func (l *lostAfter) Lost() error {
	if p := l.lost.Load(); p != nil {
		return *p
	}
	return nil
}

func TestWatchDevice(t *testing.T) {
	b := &lostAfter{}
	exited := make(chan error, 1)
	go watchDevice(b, time.Millisecond, 50*time.Millisecond, func(err error) { exited <- err })
	select {
	case err := <-exited:
		t.Fatalf("exit(%v) while the device works", err)
	case <-time.After(30 * time.Millisecond):
	}
	want := errors.New("device lost")
	lostAt := time.Now()
	b.lost.Store(&want)
	select {
	case err := <-exited:
		if err != want {
			t.Fatalf("exit(%v), want %v", err, want)
		}
		if d := time.Since(lostAt); d < 50*time.Millisecond {
			t.Fatalf("exit after %v, before the 50ms grace", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit after the device was lost")
	}
}
