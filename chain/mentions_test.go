package chain

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
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
		{"verb before the phrase", "The scene contains a medium yellow solid square <box>[[1, 2, 3, 4]]</box>.", []Entity{m("medium yellow solid square", 1, 2, 3, 4)}},
		{"we can see", "We can see a large red dotted circle <box>[[1, 2, 3, 4]]</box>.", []Entity{m("large red dotted circle", 1, 2, 3, 4)}},
		{"of inside the phrase", "It holds a cup of coffee <box>[[1, 2, 3, 4]]</box>.", []Entity{m("cup of coffee", 1, 2, 3, 4)}},
		{"above X is Y", "Above the main flower is the second flower <box>[[153, 1, 532, 516]]</box>.", []Entity{m("second flower", 153, 1, 532, 516)}},
		{"two boxes in one sentence", "A man <box>[[1, 2, 3, 4]]</box> irons clothes on a board <box>[[5, 6, 7, 8]]</box> behind a taxi <box>[[9, 10, 11, 12]]</box>.",
			[]Entity{m("man", 1, 2, 3, 4), m("board", 5, 6, 7, 8), m("taxi", 9, 10, 11, 12)}},
		{"repeated mention kept", "A cat <box>[[1, 2, 3, 4]]</box>. The cat <box>[[1, 2, 3, 4]]</box> sleeps.", []Entity{m("cat", 1, 2, 3, 4), m("cat", 1, 2, 3, 4)}},
		{"malformed box skipped", "A cat <box>[[1, 2]]</box> and a dog <box>[[5, 6, 7, 8]]</box>.", []Entity{m("dog", 5, 6, 7, 8)}},
		{"unclosed box ends the scan", "A cat <box>[[1, 2, 3, 4]]</box> and a dog <box>[[5, 6", []Entity{m("cat", 1, 2, 3, 4)}},
		{"opener inside a malformed box", "A cat <box>[[1, 2 a dog <box>[[5, 6, 7, 8]]</box>", []Entity{m("dog", 5, 6, 7, 8)}},
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

// TestMentionsSyntheticTemplates: every entity sentence frame of the
// synthetic captions (training/scenes.py ENTITY_FRAMES, with and without an
// outline) tags its box with the noun phrase "size colour fill shape".
func TestMentionsSyntheticTemplates(t *testing.T) {
	const np = "medium yellow solid square"
	box := " <box>[[12, 34, 567, 890]]</box>"
	for _, frame := range []string{"There is a %s.", "We can see a %s.", "A %s is visible.", "The scene contains a %s."} {
		for _, outline := range []string{"", " with a dark outline"} {
			caption := "The image shows two shapes on a bright gray background with a plain texture. " +
				strings.ToUpper(fmt.Sprintf(frame, np+box+outline)[:1]) + fmt.Sprintf(frame, np+box+outline)[1:] +
				" The yellow square is to the left of the red circle."
			got := Mentions(caption)
			if len(got) != 1 || got[0].Tag != np {
				t.Errorf("Mentions(%q) = %+v, want one mention tagged %q", caption, got, np)
			}
		}
	}
}

// saPancapBox is a box of the SA-Pancap reference captions: four fractions.
var saPancapBox = regexp.MustCompile(`\[\[([0-9.]+), ([0-9.]+), ([0-9.]+), ([0-9.]+)\]\]`)

// TestMentionsSAPancap runs the extraction over the 630 SA-Pancap reference
// captions, their fractional boxes rewritten in the model's
// <box>[[a, b, c, d]]</box> form: a tag is a short noun phrase, never a
// clause (no linking word, no determiner inside it), and most boxes are
// named.
func TestMentionsSAPancap(t *testing.T) {
	var total, named int
	for _, split := range []string{"val", "test"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "sapancap", split+"_gtcaption.json"))
		if err != nil {
			t.Fatal(err)
		}
		var items []struct {
			Caption string `json:"gt_response"`
		}
		if err := json.Unmarshal(data, &items); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			caption := saPancapBox.ReplaceAllStringFunc(it.Caption, func(b string) string {
				f := saPancapBox.FindStringSubmatch(b)
				var v [4]int
				for i := range v {
					x, _ := strconv.ParseFloat(f[i+1], 64)
					v[i] = min(int(x*1000), 999)
				}
				return fmt.Sprintf("<box>[[%d, %d, %d, %d]]</box>", v[0], v[1], v[2], v[3])
			})
			for _, m := range Mentions(caption) {
				total++
				words := strings.Fields(m.Tag)
				if len(words) > 0 {
					named++
				}
				bad := false
				for i, w := range words {
					bad = bad || linkingWords[wordKey(w)] || (i > 0 && i < len(words)-1 && determiners[wordKey(w)])
				}
				if bad {
					t.Errorf("mention tag %q is not a noun phrase", m.Tag)
				}
			}
		}
	}
	if total < 4500 || named < total*8/10 {
		t.Errorf("%d of %d mentions named, want ≥ 80%% of ≥ 4500", named, total)
	}
	t.Logf("%d of %d mentions named", named, total)
}
