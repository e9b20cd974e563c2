package weights

import "errors"

// Sentinel errors. Every error returned by this package wraps one of them.
var (
	// ErrFormat reports a malformed or unsupported file.
	ErrFormat = errors.New("weights: malformed checkpoint")
	// ErrTooLarge reports a header, pickle or archive entry over a limit.
	ErrTooLarge = errors.New("weights: size over limit")
	// ErrForbidden reports a pickle that names a global outside the allow-list.
	ErrForbidden = errors.New("weights: forbidden pickle global")
	// ErrMissing reports a tensor absent from the checkpoint.
	ErrMissing = errors.New("weights: tensor missing")
	// ErrShape reports a tensor whose shape is not the expected one.
	ErrShape = errors.New("weights: wrong tensor shape")
	// ErrDType reports a tensor whose dtype cannot be used as asked.
	ErrDType = errors.New("weights: unsupported dtype")
	// ErrNotFinite reports a tensor holding NaN or infinite values.
	ErrNotFinite = errors.New("weights: non-finite values")
	// ErrNoCheckpoint reports a directory holding no known checkpoint layout.
	ErrNoCheckpoint = errors.New("weights: no checkpoint found")
	// ErrClosed reports use of a closed Store.
	ErrClosed = errors.New("weights: store closed")
	// ErrLoRA reports an adapter that cannot be merged.
	ErrLoRA = errors.New("weights: bad LoRA adapter")
)
