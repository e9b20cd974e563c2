package app

import (
	"fmt"
	"strconv"
	"strings"
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
