package chain

import (
	"reflect"
	"strconv"
	"testing"
)

// The seed corpus lives in testdata/fuzz/<FuzzName>/.

func FuzzParseBoxes(f *testing.F) {
	f.Add("<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>")
	f.Fuzz(func(t *testing.T, text string) {
		boxes := ParseBoxes(text)
		if again := ParseBoxes(SerializeBoxes(boxes)); !reflect.DeepEqual(again, boxes) {
			t.Fatalf("ParseBoxes(SerializeBoxes(%v)) = %v", boxes, again)
		}
	})
}

func FuzzParseTagged(f *testing.F) {
	f.Add("cat <box>[[1, 2, 3, 4]]</box>, dog <box>[[5, 6, 7, 8]]</box>")
	f.Fuzz(func(t *testing.T, text string) {
		ents := ParseTagged(text)
		if again := ParseTagged(SerializeTagged(ents)); !reflect.DeepEqual(again, ents) {
			t.Fatalf("ParseTagged(SerializeTagged(%+v)) = %+v", ents, again)
		}
		merged := Merge(ents, ents, text)
		if len(merged) != len(ents) {
			t.Fatalf("merging a list with itself gave %d entities, want %d", len(merged), len(ents))
		}
	})
}

func FuzzMentions(f *testing.F) {
	f.Add("There is a dog <box>[[1, 2, 3, 4]]</box> on the grass.")
	f.Fuzz(func(t *testing.T, caption string) {
		ms := Mentions(caption)
		if again := Mentions(SerializeTagged(ms)); !reflect.DeepEqual(again, ms) {
			t.Fatalf("Mentions(SerializeTagged(%+v)) = %+v", ms, again)
		}
	})
}

func FuzzParsePyInt(f *testing.F) {
	f.Add("-0_1")
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := parsePyInt(s)
		if want, err := strconv.Atoi(s); err == nil && (!ok || v != want) {
			t.Fatalf("parsePyInt(%q) = %d, %v; strconv.Atoi gives %d", s, v, ok, want)
		}
		if ok {
			if back, ok2 := parsePyInt(strconv.Itoa(v)); !ok2 || back != v {
				t.Fatalf("parsePyInt(Itoa(%d)) = %d, %v", v, back, ok2)
			}
		}
	})
}
