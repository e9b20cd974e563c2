// Package eval scores panoptic captions of the synthetic scenes of
// training/scenes.py the PancapScore way: predicted entities are matched one
// to one to the ground truth (exact tag, then IoU ≥ 0.5 for location), and
// attributes, relations and the global state are read from captions of the
// scenes' closed grammar, so no language model is needed to judge them.
package eval

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/pancap-serve/pancap/chain"
)

// ErrScenes reports a malformed ground-truth file.
var ErrScenes = errors.New("eval: malformed scenes")

// Scene is the ground truth of one synthetic image, one line of
// scenes.jsonl as training/scenes.py writes it.
type Scene struct {
	ID        string     `json:"id"`
	Image     string     `json:"image"` // path relative to the split directory
	Width     int        `json:"width"`
	Height    int        `json:"height"`
	Entities  []Object   `json:"entities"`
	Relations []Relation `json:"relations"` // the relations the caption states
	Facts     []Relation `json:"facts"`     // every true relation between two entities
	Global    Global     `json:"global"`
	Caption   string     `json:"caption"`
}

// Object is one ground-truth entity.
type Object struct {
	Tag     string    `json:"tag"`
	Box     chain.Box `json:"box"` // model frame, 0–1000 of the padded square
	Colour  string    `json:"colour"`
	Size    string    `json:"size"`
	Fill    string    `json:"fill"`
	Outline string    `json:"outline"` // "none", "dark" or "light"
}

// Attributes returns the object's attributes in the form ParseCaption gives
// them ("size:large", "colour:red", "fill:striped", "outline:dark"); an
// outline of "none" is no attribute.
func (o Object) Attributes() []string {
	a := []string{"size:" + o.Size, "colour:" + o.Colour, "fill:" + o.Fill}
	if o.Outline != "" && o.Outline != "none" {
		a = append(a, "outline:"+o.Outline)
	}
	return a
}

// Global is the image's global state.
type Global struct {
	Colour     string `json:"colour"`
	Brightness string `json:"brightness"`
	Texture    string `json:"texture"`
}

// Items returns the global state as "key:value" items.
func (g Global) Items() []string {
	return []string{"brightness:" + g.Brightness, "colour:" + g.Colour, "texture:" + g.Texture}
}

// Relation is "entity Subj is Rel entity Obj", by index into a scene's
// entities; JSON form [subj, "rel", obj].
type Relation struct {
	Subj int
	Rel  string // "left of", "above", "inside", "overlapping" or "larger than"
	Obj  int
}

// UnmarshalJSON reads [subj, "rel", obj].
func (r *Relation) UnmarshalJSON(b []byte) error {
	var raw [3]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%w: relation %s: %v", ErrScenes, b, err)
	}
	if err := json.Unmarshal(raw[0], &r.Subj); err != nil {
		return fmt.Errorf("%w: relation subject %s: %v", ErrScenes, raw[0], err)
	}
	if err := json.Unmarshal(raw[1], &r.Rel); err != nil {
		return fmt.Errorf("%w: relation name %s: %v", ErrScenes, raw[1], err)
	}
	if err := json.Unmarshal(raw[2], &r.Obj); err != nil {
		return fmt.Errorf("%w: relation object %s: %v", ErrScenes, raw[2], err)
	}
	return nil
}

// ReadScenes reads scenes.jsonl: one Scene per non-empty line. Relations
// must index existing entities.
func ReadScenes(r io.Reader) ([]Scene, error) {
	var out []Scene
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var s Scene
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			if errors.Is(err, ErrScenes) {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			return nil, fmt.Errorf("%w: line %d: %v", ErrScenes, line, err)
		}
		for _, rs := range [][]Relation{s.Relations, s.Facts} {
			for _, rel := range rs {
				if rel.Subj < 0 || rel.Subj >= len(s.Entities) || rel.Obj < 0 || rel.Obj >= len(s.Entities) {
					return nil, fmt.Errorf("%w: line %d: relation %d %q %d outside %d entities",
						ErrScenes, line, rel.Subj, rel.Rel, rel.Obj, len(s.Entities))
				}
			}
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrScenes, err)
	}
	return out, nil
}
