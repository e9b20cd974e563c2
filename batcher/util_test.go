package batcher

import (
	"io"
	"log/slog"
)

// quietLogger discards logs of expected failures.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
