package chain

import (
	"reflect"
	"testing"
)

func TestHandoff_ChainOrder(t *testing.T) {
	var h Handoff
	if h.Prompt(Localize) != PromptLocalize || h.Entities() != nil {
		t.Fatal("zero Handoff is not at stage 1")
	}
	s1 := h.Advance(Localize, "<box>[[1, 2, 3, 4]]</box>, <box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>")
	if want := []Entity{{Box: Box{1, 2, 3, 4}, Stage: Localize}, {Box: Box{5, 6, 7, 8}, Stage: Localize}}; !reflect.DeepEqual(s1, want) || !reflect.DeepEqual(h.Entities(), want) {
		t.Fatalf("stage 1 = %v, entities %v, want %v", s1, h.Entities(), want)
	}
	if h.List() != "<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>" {
		t.Fatalf("stage 1 list %q", h.List())
	}
	if got := h.Prompt(Tag); got != PromptTag+"<box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>" {
		t.Fatalf("stage 2 prompt = %q", got)
	}
	s2 := h.Advance(Tag, "cat <box>[[1, 2, 3, 4]]</box>, dog <box>[[5, 6, 7, 8]]</box>")
	if len(s2) != 2 || s2[1].Stage != Tag || !reflect.DeepEqual(h.Entities(), s2) {
		t.Fatalf("stage 2 = %v, entities %v", s2, h.Entities())
	}
	s3 := h.Advance(Discover, "None.")
	if !reflect.DeepEqual(s3, s2) {
		t.Fatalf("stage 3 None = %v, want stage 2's %v", s3, s2)
	}
	s3 = h.Advance(Discover, "bird <box>[[9, 9, 9, 9]]</box>")
	if len(s3) != 3 || s3[2].Stage != Discover || len(h.Entities()) != 3 {
		t.Fatalf("stage 3 = %v", s3)
	}
	want4 := PromptCaption + "cat <box>[[1, 2, 3, 4]]</box>, dog <box>[[5, 6, 7, 8]]</box>, bird <box>[[9, 9, 9, 9]]</box>"
	if got := h.Prompt(Caption); got != want4 {
		t.Fatalf("stage 4 prompt = %q", got)
	}
	m := h.Advance(Caption, "A bird <box>[[9, 9, 9, 9]]</box> flies.")
	if len(m) != 1 || m[0].Tag != "bird" || len(h.Entities()) != 3 || h.List() != "" {
		t.Fatalf("stage 4 mentions %v, entities %v, list %q", m, h.Entities(), h.List())
	}
}

func TestHandoffBound(t *testing.T) {
	maxNew := [4]int{10, 20, 30, 40}
	for st, want := range map[Stage]int{Localize: 4, Tag: 14, Discover: 24, Caption: 54} {
		if got := HandoffBound(st, maxNew); got != want {
			t.Errorf("HandoffBound(%v) = %d, want %d", st, got, want)
		}
	}
}
