package score

import (
	"math"
	"strconv"
	"strings"
	"unicode"
)

// The authors' parser leans on Python's int(), float() and str.split();
// these helpers give the same answers on every string, so a judge line
// parses here exactly as it parses there.

// isPySpace is Python's str.isspace() for one character: Unicode White_Space
// plus the four ASCII information separators.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// pyFields is Python's str.split() with no argument.
func pyFields(s string) []string { return strings.FieldsFunc(s, isPySpace) }

// trimNumberSpace strips the whitespace Python's int() and float() ignore
// around a number: ASCII space, tab, newline, vertical tab, form feed,
// carriage return and any non-ASCII Unicode whitespace (not the ASCII
// information separators, which str.split() does treat as whitespace).
func trimNumberSpace(s string) string { return strings.TrimFunc(s, unicode.IsSpace) }

// digitValue is the value of a Unicode decimal digit (category Nd), which
// Python's int() and float() accept in place of ASCII digits. Nd digits
// come in runs of ten from zero, so the value is the distance from the
// start of the run modulo ten.
func digitValue(r rune) (int, bool) {
	if r >= '0' && r <= '9' {
		return int(r - '0'), true
	}
	if !unicode.IsDigit(r) {
		return 0, false
	}
	start := r
	for unicode.IsDigit(start - 1) {
		start--
	}
	return int(r-start) % 10, true
}

// asciiDigits rewrites s's digits to ASCII and checks Python's underscore
// rule for a run of digits: underscores only singly between digits. It
// reports false for an empty run or any other character.
func asciiDigits(s string) (string, bool) {
	var b strings.Builder
	prevDigit := false
	for _, r := range s {
		if r == '_' {
			if !prevDigit {
				return "", false
			}
			prevDigit = false
			continue
		}
		d, ok := digitValue(r)
		if !ok {
			return "", false
		}
		b.WriteByte(byte('0' + d))
		prevDigit = true
	}
	return b.String(), prevDigit
}

// pyInt is Python's int(s) in base 10, returned as the canonical decimal
// text str(int(s)) (so any size fits): surrounding whitespace, a sign,
// Unicode digits and single underscores between digits are accepted.
func pyInt(s string) (string, bool) {
	s = trimNumberSpace(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	digits, ok := asciiDigits(s)
	if !ok {
		return "", false
	}
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", true
	}
	if neg {
		return "-" + digits, true
	}
	return digits, true
}

// pyFloat is Python's float(s): surrounding whitespace, a sign, "inf",
// "infinity" and "nan" in any case, decimal digits (Unicode ones too) with
// single underscores between digits, an optional fraction and exponent.
// Values past the float64 range become ±Inf or 0 as in Python.
func pyFloat(s string) (float64, bool) {
	s = trimNumberSpace(s)
	sign := ""
	if s != "" && (s[0] == '+' || s[0] == '-') {
		sign, s = s[:1], s[1:]
	}
	switch strings.ToLower(s) {
	case "inf", "infinity":
		v := math.Inf(1)
		if sign == "-" {
			v = -v
		}
		return v, true
	case "nan":
		return math.NaN(), true
	}
	mant, exp, hasExp := strings.Cut(s, "e")
	if !hasExp {
		mant, exp, hasExp = strings.Cut(s, "E")
	}
	intPart, frac, hasDot := strings.Cut(mant, ".")
	var num strings.Builder
	num.WriteString(sign)
	if intPart != "" {
		d, ok := asciiDigits(intPart)
		if !ok {
			return 0, false
		}
		num.WriteString(d)
	}
	if hasDot {
		num.WriteByte('.')
		if frac != "" {
			d, ok := asciiDigits(frac)
			if !ok {
				return 0, false
			}
			num.WriteString(d)
		}
	}
	if intPart == "" && frac == "" {
		return 0, false
	}
	if hasExp {
		esign := ""
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			esign, exp = exp[:1], exp[1:]
		}
		d, ok := asciiDigits(exp)
		if !ok {
			return 0, false
		}
		num.WriteString("e" + esign + d)
	}
	v, err := strconv.ParseFloat(num.String(), 64)
	if err != nil && !isRangeErr(err) {
		return 0, false
	}
	return v, true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
