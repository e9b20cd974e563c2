package batcher

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/sample"
)

// Caps that Limits may not exceed: the stop-string matcher's cost is bounded
// by them whatever the configuration.
const (
	MaxStopStrings = 16  // stop strings per request
	MaxStopBytes   = 256 // bytes per stop string
)

// MaxRequestIDBytes bounds a request's id; the logs carry it.
const MaxRequestIDBytes = 128

// Limits are the request rules that do not depend on the model. They are
// the one home of those rules and of their defaults: the server's flags set
// them, both transports check requests against them before any work
// (server's validator, the OpenAI API through it), SubmitChain and
// SubmitGenerate check them again, and GetModelInfo reports them. The rules
// that depend on the model (the context) are the batcher's at submission.
type Limits struct {
	MaxNewTokens        int // largest max_new_tokens of one stage
	DefaultMaxNewTokens int // a stage's limit when a request leaves it 0 (the reference's 1024)
	MaxStopStrings      int // stop strings per request, at most the cap MaxStopStrings
	MaxStopBytes        int // bytes of one stop string, at most the cap MaxStopBytes
	MaxPromptBytes      int // bytes of a GenerateRequest's prompt
}

// DefaultLimits are the limits where none are configured.
func DefaultLimits() Limits {
	return Limits{MaxNewTokens: 4096, DefaultMaxNewTokens: 1024,
		MaxStopStrings: MaxStopStrings, MaxStopBytes: MaxStopBytes, MaxPromptBytes: 64 << 10}
}

// WithDefaults returns l with its zero fields taken from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct {
		v *int
		d int
	}{
		{&l.MaxNewTokens, d.MaxNewTokens}, {&l.DefaultMaxNewTokens, d.DefaultMaxNewTokens},
		{&l.MaxStopStrings, d.MaxStopStrings}, {&l.MaxStopBytes, d.MaxStopBytes}, {&l.MaxPromptBytes, d.MaxPromptBytes},
	} {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	return l
}

// ErrLimits is wrapped by Limits.Check's errors.
var ErrLimits = errors.New("bad limits")

// Check refuses limits that are not positive, stop-string limits above the
// caps, and a default above the largest allowed max_new_tokens. Fields are
// named as Go fields; a caller with flags names its own.
func (l Limits) Check() error {
	for _, f := range []struct {
		name    string
		v, most int
	}{
		{"MaxNewTokens", l.MaxNewTokens, 1 << 30},
		{"DefaultMaxNewTokens", l.DefaultMaxNewTokens, l.MaxNewTokens},
		{"MaxStopStrings", l.MaxStopStrings, MaxStopStrings},
		{"MaxStopBytes", l.MaxStopBytes, MaxStopBytes},
		{"MaxPromptBytes", l.MaxPromptBytes, 1 << 30},
	} {
		if f.v < 1 || f.v > f.most {
			return fmt.Errorf("%w: %s must be in [1, %d], got %d", ErrLimits, f.name, f.most, f.v)
		}
	}
	return nil
}

// FieldError is a request that breaks a rule of one field. It wraps
// ErrInvalidRequest; Field is the API's name of the field, e.g.
// "sampling.top_p" or "stop[2]".
type FieldError struct {
	Field string
	Msg   string
}

// Error is "field: msg".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap returns ErrInvalidRequest.
func (e *FieldError) Unwrap() error { return ErrInvalidRequest }

// invalid returns a FieldError.
func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// CheckChain checks the fields of r that the limits govern.
func (l Limits) CheckChain(r ChainRequest) error {
	if len(r.Image) == 0 {
		return invalid("image", "required: the request carries no image bytes")
	}
	if r.Stages < 0 || r.Stages > len(chain.Stages) {
		return invalid("stages", "must be in [0, %d] (0 means all), got %d", len(chain.Stages), r.Stages)
	}
	for i, n := range r.MaxNewTokens {
		if err := l.maxNewTokens(fmt.Sprintf("max_new_tokens[%d]", i), n); err != nil {
			return err
		}
	}
	return l.common(r.RequestID, r.Sampling, r.Stop)
}

// CheckGenerate checks the fields of r that the limits govern.
func (l Limits) CheckGenerate(r GenerateRequest) error {
	if r.Prompt == "" {
		return invalid("prompt", "required")
	}
	if n := len(r.Prompt); n > l.MaxPromptBytes {
		return invalid("prompt", "at most %d bytes, got %d", l.MaxPromptBytes, n)
	}
	if err := l.maxNewTokens("max_new_tokens", r.MaxNewTokens); err != nil {
		return err
	}
	return l.common(r.RequestID, r.Sampling, r.Stop)
}

// maxNewTokens checks one stage's token limit (0: the default).
func (l Limits) maxNewTokens(field string, n int) error {
	if n < 0 || n > l.MaxNewTokens {
		return invalid(field, "must be in [0, %d] (0 means the default, %d), got %d", l.MaxNewTokens, l.DefaultMaxNewTokens, n)
	}
	return nil
}

// common checks the fields both requests have.
func (l Limits) common(requestID string, p sample.Params, stops []string) error {
	if err := p.Validate(); err != nil {
		var pe *sample.ParamError
		if errors.As(err, &pe) {
			return invalid("sampling."+pe.Field, "%s", pe.Reason)
		}
		return invalid("sampling", "%v", err)
	}
	if len(stops) > l.MaxStopStrings {
		return invalid("stop", "at most %d strings, got %d", l.MaxStopStrings, len(stops))
	}
	for i, s := range stops {
		if s == "" || len(s) > l.MaxStopBytes || !utf8.ValidString(s) {
			return invalid(fmt.Sprintf("stop[%d]", i), "must be 1 to %d bytes of UTF-8, got %d bytes", l.MaxStopBytes, len(s))
		}
	}
	if n := len(requestID); n > MaxRequestIDBytes {
		return invalid("request_id", "at most %d bytes, got %d", MaxRequestIDBytes, n)
	}
	return nil
}
