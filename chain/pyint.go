package chain

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// pyMaxStrDigits is CPython's default int_max_str_digits: int() refuses a
// decimal string with more digits than this.
const pyMaxStrDigits = 4300

// parsePyInt parses s as Python 3.11's int(s) does for a str in base 10:
//
//   - leading and trailing whitespace is ignored: ASCII space, \t, \n, \v, \f,
//     \r, and every non-ASCII rune of Unicode's White_Space property (U+0085,
//     U+00A0, U+2000…, U+3000, …) — but not U+001C–U+001F, which str.isspace
//     accepts and int() rejects;
//   - then an optional sign "+" or "-", directly followed by digits;
//   - digits are any Unicode decimal digits (category Nd: "7", "٣", "５", "𝟏"),
//     mixed freely, with single underscores allowed between two digits
//     ("1_000");
//   - at most 4300 digits (CPython's int_max_str_digits), leading zeros included.
//
// Python's ints are unbounded; a value that does not fit an int is reported
// as not ok here (the only divergence; such a box is meaningless anyway).
func parsePyInt(s string) (int, bool) {
	i, j := 0, len(s)
	for i < j {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !pySpace(r) {
			break
		}
		i += n
	}
	for j > i {
		r, n := utf8.DecodeLastRuneInString(s[i:j])
		if !pySpace(r) {
			break
		}
		j -= n
	}
	s = s[i:j]
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var v uint64
	digits, overflow, prevDigit := 0, false, false
	for _, r := range s {
		if r == '_' {
			if !prevDigit {
				return 0, false
			}
			prevDigit = false
			continue
		}
		d, ok := digitValue(r)
		if !ok {
			return 0, false
		}
		digits++
		prevDigit = true
		if v > (math.MaxUint64-9)/10 {
			overflow = true
		} else {
			v = v*10 + uint64(d)
		}
	}
	if !prevDigit || digits > pyMaxStrDigits || overflow {
		// empty, a trailing underscore, too long, or beyond 64 bits
		return 0, false
	}
	if neg {
		if v > -math.MinInt64 {
			return 0, false
		}
		return int(-int64(v)), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int(v), true
}

// pySpace reports whether int() skips r as leading or trailing whitespace.
func pySpace(r rune) bool {
	if r < utf8.RuneSelf {
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r':
			return true
		}
		return false
	}
	return unicode.IsSpace(r)
}

// digitValue returns the value of a decimal digit as Python 3.11 knows them
// (Unicode 14.0). Every range of unicode.Nd is a run of whole 0–9 sequences
// starting at a zero, so the value is the offset into the range modulo 10.
// Go's tables are Unicode 15.0, whose new digits (Kawi, Nag Mundari) Python
// 3.11's int() refuses, so they are refused here too.
func digitValue(r rune) (int, bool) {
	if r >= '0' && r <= '9' {
		return int(r - '0'), true
	}
	if r < utf8.RuneSelf || (r >= 0x11F50 && r <= 0x11F59) || (r >= 0x1E4F0 && r <= 0x1E4F9) {
		return 0, false
	}
	for _, rg := range unicode.Nd.R16 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			if rg.Stride != 1 {
				return 0, false
			}
			return int(r-rune(rg.Lo)) % 10, true
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			if rg.Stride != 1 {
				return 0, false
			}
			return int(r-rune(rg.Lo)) % 10, true
		}
	}
	return 0, false
}
