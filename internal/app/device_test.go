package app

import "testing"

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
