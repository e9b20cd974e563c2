package app

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseDevice splits a --device value: "cpu" (or "", the default), "cuda"
// (device 0) or "cuda:N".
func parseDevice(s string) (kind string, ordinal int, err error) {
	if s == "" {
		return "cpu", 0, nil
	}
	kind, num, hasNum := strings.Cut(s, ":")
	switch {
	case kind == "cpu" && !hasNum:
		return kind, 0, nil
	case kind == "cuda" && !hasNum:
		return kind, 0, nil
	case kind == "cuda":
		if ordinal, err = strconv.Atoi(num); err == nil && ordinal >= 0 {
			return kind, ordinal, nil
		}
	}
	return "", 0, fmt.Errorf("--device: want cpu, cuda or cuda:N, got %q", s)
}

// watchDevice calls exit with the backend's error grace after it is first
// seen lost (a GPU after a sticky error), checking every poll; it never
// returns otherwise.
func watchDevice(b interface{ Lost() error }, poll, grace time.Duration, exit func(error)) {
	for {
		if err := b.Lost(); err != nil {
			time.Sleep(grace)
			exit(err)
			return
		}
		time.Sleep(poll)
	}
}
