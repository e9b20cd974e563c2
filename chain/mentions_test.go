package chain

import (
	"reflect"
	"testing"
)

func TestMentions(t *testing.T) {
	m := func(tag string, b ...int) Entity { return Entity{Tag: tag, Box: Box(b), Stage: Caption} }
	tests := []struct {
		name string
		in   string
		want []Entity
	}{
		{"empty", "", nil},
		{"no boxes", "A sunny day by the lake.", nil},
		{"plain noun phrase", "Green stems and leaves <box>[[0, 603, 806, 999]]</box> emerge from the bottom.", []Entity{m("Green stems and leaves", 0, 603, 806, 999)}},
		{"located at", "To the right is a bud, and the bud is located at <box>[[678, 314, 768, 406]]</box>.", []Entity{m("bud", 678, 314, 768, 406)}},
		{"bounding box is", "The flowers stand before a wall, and the wall's bounding box is <box>[[0, 0, 999, 999]]</box>.", []Entity{m("wall", 0, 0, 999, 999)}},
		{"positioned at a place", "The main flower is positioned at the left side of the image <box>[[4, 322, 454, 927]]</box>.", []Entity{m("main flower", 4, 322, 454, 927)}},
		{"there is", "There is a dog <box>[[1, 2, 3, 4]]</box> on the grass.", []Entity{m("dog", 1, 2, 3, 4)}},
		{"above X is Y", "Above the main flower is the second flower <box>[[153, 1, 532, 516]]</box>.", []Entity{m("second flower", 153, 1, 532, 516)}},
		{"two boxes in one sentence", "A man <box>[[1, 2, 3, 4]]</box> irons clothes on a board <box>[[5, 6, 7, 8]]</box> behind a taxi <box>[[9, 10, 11, 12]]</box>.",
			[]Entity{m("man", 1, 2, 3, 4), m("irons clothes on a board", 5, 6, 7, 8), m("taxi", 9, 10, 11, 12)}},
		{"repeated mention kept", "A cat <box>[[1, 2, 3, 4]]</box>. The cat <box>[[1, 2, 3, 4]]</box> sleeps.", []Entity{m("cat", 1, 2, 3, 4), m("cat", 1, 2, 3, 4)}},
		{"malformed box skipped", "A cat <box>[[1, 2]]</box> and a dog <box>[[5, 6, 7, 8]]</box>.", []Entity{m("dog", 5, 6, 7, 8)}},
		{"unclosed box ends the scan", "A cat <box>[[1, 2, 3, 4]]</box> and a dog <box>[[5, 6", []Entity{m("cat", 1, 2, 3, 4)}},
		{"opener inside a malformed box", "A cat <box>[[1, 2 a dog <box>[[5, 6, 7, 8]]</box>", []Entity{m("2 a dog", 5, 6, 7, 8)}},
		{"box without </box>", "A kite [[1]] <box>[[1, 2, 3, 4]] flies.", []Entity{m("kite [[1]]", 1, 2, 3, 4)}},
		{"no words", "<box>[[1, 2, 3, 4]]</box>", []Entity{m("", 1, 2, 3, 4)}},
		{"possessive only", "its <box>[[1, 2, 3, 4]]</box>", []Entity{m("", 1, 2, 3, 4)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Mentions(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Mentions(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if again := Mentions(SerializeTagged(got)); !reflect.DeepEqual(again, got) {
				t.Errorf("Mentions(SerializeTagged(m)) = %+v, want %+v", again, got)
			}
		})
	}
}
