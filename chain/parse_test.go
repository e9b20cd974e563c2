package chain

import (
	"reflect"
	"testing"
)

func TestParseBoxes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Box
	}{
		{"empty", "", nil},
		{"one", "<box>[[1, 2, 3, 4]]</box>", []Box{{1, 2, 3, 4}}},
		{"two", "<box>[[1, 2, 3, 4]]</box>, <box>[[10, 20, 30, 40]]</box>", []Box{{1, 2, 3, 4}, {10, 20, 30, 40}}},
		{"duplicate dropped", "<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>, <box>[[1, 2, 3, 4]]</box>", []Box{{1, 2, 3, 4}, {5, 6, 7, 8}}},
		{"same value other spelling is a duplicate", "<box>[[1, 2, 3, 4]]</box>, <box>[[01, +2, 3, 4]]</box>", []Box{{1, 2, 3, 4}}},
		{"last without </box>", "<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]", []Box{{1, 2, 3, 4}, {5, 6, 7, 8}}},
		{"truncated by the token limit", "<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>, <box>[[9, 1", []Box{{1, 2, 3, 4}, {5, 6, 7, 8}}},
		{"truncated inside the opener", "<box>[[1, 2, 3, 4]]</box>, <bo", []Box{{1, 2, 3, 4}}},
		{"stop at malformed keeps later out", "<box>[[1, 2, 3, 4]]</box>, <box>[[x, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>", []Box{{1, 2, 3, 4}}},
		{"three values", "<box>[[1, 2, 3]]</box>", nil},
		{"five values", "<box>[[1, 2, 3, 4, 5]]</box>", nil},
		{"comma without space", "<box>[[1,2, 3, 4]]</box>", nil},
		{"extra spaces are int() whitespace", "<box>[[1,  2 , 3, 4\t]]</box>", []Box{{1, 2, 3, 4}}},
		{"negative and large values kept", "<box>[[-5, 0, 1000, 99999]]</box>", []Box{{-5, 0, 1000, 99999}}},
		{"underscore and unicode digits", "<box>[[1_0, ٣, ５, 4]]</box>", []Box{{10, 3, 5, 4}}},
		{"float is malformed", "<box>[[0.1, 2, 3, 4]]</box>", nil},
		{"leading space before <box>", " <box>[[1, 2, 3, 4]]</box>", nil},
		{"tagged item is malformed for stage 1", "person <box>[[1, 2, 3, 4]]</box>", nil},
		{"trailing period", "<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>.", []Box{{1, 2, 3, 4}}},
		{"double </box>", "<box>[[1, 2, 3, 4]]</box></box>", nil},
		{"separator without space", "<box>[[1, 2, 3, 4]]</box>,<box>[[5, 6, 7, 8]]</box>", nil},
		{"None", "None", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseBoxes(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseBoxes(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTagged(t *testing.T) {
	e := func(tag string, b ...int) Entity { return Entity{Tag: tag, Box: Box(b)} }
	tests := []struct {
		name string
		in   string
		want []Entity
	}{
		{"empty", "", nil},
		{"two", "person <box>[[1, 2, 3, 4]]</box>, dog <box>[[5, 6, 7, 8]]</box>", []Entity{e("person", 1, 2, 3, 4), e("dog", 5, 6, 7, 8)}},
		{"multi-word tag", "red brick wall <box>[[0, 0, 999, 999]]</box>", []Entity{e("red brick wall", 0, 0, 999, 999)}},
		{"exact duplicate dropped", "cat <box>[[1, 2, 3, 4]]</box>, cat <box>[[1, 2, 3, 4]]</box>", []Entity{e("cat", 1, 2, 3, 4)}},
		{"same box other tag kept", "cat <box>[[1, 2, 3, 4]]</box>, kitten <box>[[1, 2, 3, 4]]</box>", []Entity{e("cat", 1, 2, 3, 4), e("kitten", 1, 2, 3, 4)}},
		{"same tag other box kept", "cat <box>[[1, 2, 3, 4]]</box>, cat <box>[[1, 2, 3, 5]]</box>", []Entity{e("cat", 1, 2, 3, 4), e("cat", 1, 2, 3, 5)}},
		{"tag with commas", "salt, pepper, and oil <box>[[1, 2, 3, 4]]</box>", []Entity{e("salt, pepper, and oil", 1, 2, 3, 4)}},
		{"tag containing <box>", "a <box> sign <box>[[1, 2, 3, 4]]</box>", []Entity{e("a <box> sign", 1, 2, 3, 4)}},
		{"tag containing <box>[[", "x <box>[[y <box>[[1, 2, 3, 4]]</box>", []Entity{e("x <box>[[y", 1, 2, 3, 4)}},
		{"empty tag", " <box>[[1, 2, 3, 4]]</box>", []Entity{e("", 1, 2, 3, 4)}},
		{"tag kept verbatim", "  Person  <box>[[1, 2, 3, 4]]</box>", []Entity{e("  Person ", 1, 2, 3, 4)}},
		{"no tag separator is malformed", "<box>[[1, 2, 3, 4]]</box>", nil},
		{"truncated by the token limit", "cat <box>[[1, 2, 3, 4]]</box>, dog <box>[[5, 6, 7, 8]]</box>, tree <box>[[9, 10, 11", []Entity{e("cat", 1, 2, 3, 4), e("dog", 5, 6, 7, 8)}},
		{"truncated before </box>", "cat <box>[[1, 2, 3, 4]]", []Entity{e("cat", 1, 2, 3, 4)}},
		{"truncated inside a tag", "cat <box>[[1, 2, 3, 4]]</box>, do", []Entity{e("cat", 1, 2, 3, 4)}},
		{"stop at the first malformed item", "cat <box>[[1, 2, 3, 4]]</box>, dog <box>[[a, 6, 7, 8]]</box>, tree <box>[[9, 10, 11, 12]]</box>", []Entity{e("cat", 1, 2, 3, 4)}},
		{"None answer", "None of the entities are missing.", nil},
		{"None then a list", "None <box>[[1, 2, 3, 4]]</box>", []Entity{e("None", 1, 2, 3, 4)}},
		{"last item keeps </box>, others lose it", "a <box>[[1, 2, 3, 4]]</box>, b <box>[[5, 6, 7, 8]]</box>", []Entity{e("a", 1, 2, 3, 4), e("b", 5, 6, 7, 8)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseTagged(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseTagged(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	s2 := []Entity{{Tag: "cat", Box: Box{1, 2, 3, 4}}, {Tag: "dog", Box: Box{5, 6, 7, 8}}}
	s3 := []Entity{{Tag: "dog", Box: Box{5, 6, 7, 8}}, {Tag: "tree", Box: Box{9, 9, 9, 9}}, {Tag: "cat", Box: Box{1, 2, 3, 5}}}
	got := Merge(s2, s3, "dog <box>[[5, 6, 7, 8]]</box>, tree ...")
	want := []Entity{
		{Tag: "cat", Box: Box{1, 2, 3, 4}, Stage: Tag},
		{Tag: "dog", Box: Box{5, 6, 7, 8}, Stage: Tag},
		{Tag: "tree", Box: Box{9, 9, 9, 9}, Stage: Discover},
		{Tag: "cat", Box: Box{1, 2, 3, 5}, Stage: Discover},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge = %v, want %v", got, want)
	}
	if s2[0].Stage != 0 {
		t.Error("Merge modified its input")
	}
	got = Merge(s2, s3, "None. All entities are specified.")
	if len(got) != 2 || got[1].Stage != Tag {
		t.Errorf("Merge with None = %v, want stage 2's two entities", got)
	}
	if got := Merge(nil, nil, ""); len(got) != 0 {
		t.Errorf("Merge(nil, nil) = %v", got)
	}
}

func TestSerialize(t *testing.T) {
	if got, want := SerializeBoxes([]Box{{1, 2, 3, 4}, {-5, 0, 1000, 7}}), "<box>[[1, 2, 3, 4]]</box>, <box>[[-5, 0, 1000, 7]]</box>"; got != want {
		t.Errorf("SerializeBoxes = %q, want %q", got, want)
	}
	ents := []Entity{{Tag: "cat", Box: Box{1, 2, 3, 4}}, {Tag: "", Box: Box{5, 6, 7, 8}}}
	if got, want := SerializeTagged(ents), "cat <box>[[1, 2, 3, 4]]</box>,  <box>[[5, 6, 7, 8]]</box>"; got != want {
		t.Errorf("SerializeTagged = %q, want %q", got, want)
	}
	if SerializeBoxes(nil) != "" || SerializeTagged(nil) != "" {
		t.Error("serialising nothing is not empty")
	}
}

// TestHandoff runs the hand-off of a realistic chain: stage 1's list with a
// duplicate and a truncated tail feeds stage 2's prompt, and so on.
func TestHandoff(t *testing.T) {
	out1 := "<box>[[12, 40, 500, 980]]</box>, <box>[[520, 300, 990, 700]]</box>, <box>[[12, 40, 500, 980]]</box>, <box>[[0, 0, 999, 3"
	boxes := ParseBoxes(out1)
	p2 := Prompt(Tag, SerializeBoxes(boxes))
	want2 := PromptTag + "<box>[[12, 40, 500, 980]]</box>, <box>[[520, 300, 990, 700]]</box>"
	if p2 != want2 {
		t.Fatalf("stage 2 prompt = %q, want %q", p2, want2)
	}
	out2 := "woman <box>[[12, 40, 500, 980]]</box>, bicycle <box>[[520, 300, 990, 700]]</box>"
	s2 := ParseTagged(out2)
	if got := SerializeTagged(s2); got != out2 {
		t.Errorf("stage 2 re-serialised = %q, want %q", got, out2)
	}
	out3 := "helmet <box>[[100, 40, 200, 120]]</box>, woman <box>[[12, 40, 500, 980]]</box>"
	merged := Merge(s2, ParseTagged(out3), out3)
	want4 := PromptCaption + out2 + ", helmet <box>[[100, 40, 200, 120]]</box>"
	if got := Prompt(Caption, SerializeTagged(merged)); got != want4 {
		t.Errorf("stage 4 prompt = %q, want %q", got, want4)
	}
}
