package chain

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// goldenStage is one stage record of the reference's chain goldens
// (tools/reference/chain.py).
type goldenStage struct {
	Stage   Stage           `json:"stage"`
	Prompt  string          `json:"prompt"`
	Text    string          `json:"text"`
	Parsed  json.RawMessage `json:"parsed"`
	Merged  []goldenEntity  `json:"merged"`
	Handoff *string         `json:"handoff"`
}

type goldenEntity struct {
	Tag string `json:"tag"`
	Box Box    `json:"box"`
}

type goldenChain struct {
	Name    string        `json:"name"`
	Stages  []goldenStage `json:"stages"`
	Caption string        `json:"caption"`
}

// TestGoldenChains runs the hand-off over the stage texts of the reference's
// chain goldens (model runs and the forced cases) and compares every parsed
// list, the merge, the serialised hand-off and the next stage's prompt.
func TestGoldenChains(t *testing.T) {
	files, _ := filepath.Glob("../testdata/golden/chain-*.json")
	if len(files) == 0 {
		t.Skip("no chain goldens in ../testdata/golden")
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			goldenChain
			Cases []goldenChain `json:"cases"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		chains := doc.Cases
		if len(doc.Stages) > 0 {
			chains = append(chains, doc.goldenChain)
		}
		if len(chains) == 0 {
			t.Fatalf("%s: no chains", file)
		}
		for _, c := range chains {
			t.Run(filepath.Base(file)+"/"+c.Name, func(t *testing.T) { checkGoldenChain(t, c) })
		}
	}
}

func checkGoldenChain(t *testing.T, c goldenChain) {
	handoff := ""
	var stage2 []Entity
	var h Handoff
	for _, st := range c.Stages {
		if got := Prompt(st.Stage, handoff); got != st.Prompt {
			t.Fatalf("stage %d prompt = %q, want %q", st.Stage, got, st.Prompt)
		}
		if got := h.Prompt(st.Stage); got != st.Prompt {
			t.Fatalf("Handoff: stage %d prompt = %q, want %q", st.Stage, got, st.Prompt)
		}
		checkAdvance(t, st, h.Advance(st.Stage, st.Text))
		switch st.Stage {
		case Localize:
			var want []Box
			mustUnmarshal(t, st.Parsed, &want)
			got := ParseBoxes(st.Text)
			if !sameBoxes(got, want) {
				t.Fatalf("stage 1 parsed %v, want %v", got, want)
			}
			handoff = SerializeBoxes(got)
		case Tag, Discover:
			var want []goldenEntity
			mustUnmarshal(t, st.Parsed, &want)
			got := ParseTagged(st.Text)
			if !sameEntities(got, want) {
				t.Fatalf("stage %d parsed %v, want %v", st.Stage, got, want)
			}
			if st.Stage == Tag {
				stage2 = got
				handoff = SerializeTagged(got)
				break
			}
			merged := Merge(stage2, got, st.Text)
			if !sameEntities(merged, st.Merged) {
				t.Fatalf("merged %v, want %v", merged, st.Merged)
			}
			handoff = SerializeTagged(merged)
		case Caption:
			if st.Text != c.Caption {
				t.Fatalf("caption %q differs from stage 4's text %q", c.Caption, st.Text)
			}
			Mentions(st.Text) // must not panic on real output
			continue
		}
		if st.Handoff == nil || *st.Handoff != handoff {
			t.Fatalf("stage %d hand-off = %q, want %v", st.Stage, handoff, st.Handoff)
		}
	}
}

// checkAdvance compares Handoff.Advance's list with the golden stage's.
func checkAdvance(t *testing.T, st goldenStage, got []Entity) {
	t.Helper()
	var want []goldenEntity
	switch st.Stage {
	case Localize:
		var boxes []Box
		mustUnmarshal(t, st.Parsed, &boxes)
		for _, b := range boxes {
			want = append(want, goldenEntity{Box: b})
		}
	case Tag:
		mustUnmarshal(t, st.Parsed, &want)
	case Discover:
		want = st.Merged
	case Caption:
		return
	}
	if !sameEntities(got, want) {
		t.Fatalf("Handoff: stage %d list %v, want %v", st.Stage, got, want)
	}
	for _, e := range got {
		if e.Stage != st.Stage && !(st.Stage == Discover && e.Stage == Tag) {
			t.Fatalf("Handoff: stage %d entity %v has stage %d", st.Stage, e, e.Stage)
		}
	}
}

func mustUnmarshal(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("golden list %s: %v", raw, err)
	}
}

func sameBoxes(got, want []Box) bool {
	return len(got) == len(want) && (len(got) == 0 || reflect.DeepEqual(got, want))
}

func sameEntities(got []Entity, want []goldenEntity) bool {
	if len(got) != len(want) {
		return false
	}
	for i, e := range got {
		if e.Tag != want[i].Tag || e.Box != want[i].Box {
			return false
		}
	}
	return true
}
