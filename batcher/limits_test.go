package batcher

import (
	"errors"
	"strings"
	"testing"
)

func TestLimitsCheck(t *testing.T) {
	if err := DefaultLimits().Check(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, tt := range []struct {
		edit func(*Limits)
		name string
	}{
		{func(l *Limits) { l.MaxNewTokens = 0 }, "MaxNewTokens"},
		{func(l *Limits) { l.DefaultMaxNewTokens = l.MaxNewTokens + 1 }, "DefaultMaxNewTokens"},
		{func(l *Limits) { l.MaxStopStrings = MaxStopStrings + 1 }, "MaxStopStrings"},
		{func(l *Limits) { l.MaxStopBytes = -1 }, "MaxStopBytes"},
		{func(l *Limits) { l.MaxPromptBytes = 0 }, "MaxPromptBytes"},
	} {
		l := DefaultLimits()
		tt.edit(&l)
		if err := l.Check(); !errors.Is(err, ErrLimits) || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%+v: %v, want ErrLimits naming %s", l, err, tt.name)
		}
	}
	var zero Limits
	if zero.WithDefaults() != DefaultLimits() {
		t.Errorf("zero limits with defaults = %+v", zero.WithDefaults())
	}
}

// TestLimitsFieldErrors: a request's rule violations name the API field,
// wrap ErrInvalidRequest, and come from the one validator.
func TestLimitsFieldErrors(t *testing.T) {
	l := DefaultLimits()
	err := l.CheckGenerate(GenerateRequest{Prompt: strings.Repeat("x", l.MaxPromptBytes+1)})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "prompt" || !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("long prompt: %v", err)
	}
	err = l.CheckChain(ChainRequest{Image: []byte("x"), RequestID: strings.Repeat("i", MaxRequestIDBytes+1)})
	if !errors.As(err, &fe) || fe.Field != "request_id" {
		t.Fatalf("long request id: %v", err)
	}
}
