package chain

import (
	"strings"
	"testing"
)

// TestParsePyInt checks the accepted syntax against what Python 3.11's
// int() was observed to do on each input.
func TestParsePyInt(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"5", 5, true},
		{" 5", 5, true},
		{"5 ", 5, true},
		{"\t-0\n", 0, true},
		{"+5", 5, true},
		{"-5", -5, true},
		{"0005", 5, true},
		{"1_000", 1000, true},
		{"0_0", 0, true},
		{"٣", 3, true},     // Arabic-Indic three
		{"٣_٣", 33, true},  // underscore between Unicode digits
		{"５", 5, true},     // fullwidth
		{"𝟏", 1, true},     // mathematical bold
		{"1٢3", 123, true}, // mixed scripts
		{"\u00a05\u2003", 5, true},
		{"\u00855", 5, true}, // NEL is non-ASCII whitespace
		{"9223372036854775807", 9223372036854775807, true},
		{"-9223372036854775808", -9223372036854775808, true},
		{strings.Repeat("0", 4299) + "5", 5, true},
		{"", 0, false},
		{" ", 0, false},
		{"- 5", 0, false},
		{"+-1", 0, false},
		{"1__0", 0, false},
		{"_1", 0, false},
		{"1_", 0, false},
		{"+_1", 0, false},
		{"_", 0, false},
		{"1 2", 0, false},
		{"1.0", 0, false},
		{"0x10", 0, false},
		{"\x1c5\x1f", 0, false},                     // str.isspace() but not int() whitespace
		{"\u200b5", 0, false},                       // zero-width space is not whitespace
		{"\U00011F55", 0, false},                    // Kawi digit: Unicode 15, unknown to Python 3.11
		{"\xff", 0, false},                          // invalid UTF-8
		{strings.Repeat("0", 4300) + "5", 0, false}, // over int_max_str_digits
		{"9223372036854775808", 0, false},           // beyond int64: documented divergence
		{"99999999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := parsePyInt(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parsePyInt(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
