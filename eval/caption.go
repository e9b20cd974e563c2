package eval

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/pancap-serve/pancap/chain"
)

// The closed vocabulary of training/scenes.py's captions.
var (
	sizeWords   = map[string]bool{"small": true, "medium": true, "large": true}
	fillWords   = map[string]bool{"solid": true, "striped": true, "dotted": true}
	colourWords = map[string]bool{"red": true, "green": true, "blue": true, "yellow": true,
		"orange": true, "purple": true, "white": true, "black": true}
	// relationPhrases maps the caption's relation phrases to relation names.
	relationPhrases = map[string]string{
		"to the left of": "left of", "above": "above", "inside": "inside",
		"overlapping": "overlapping", "overlaps": "overlapping",
		"larger than": "larger than", "bigger than": "larger than",
	}
)

var (
	// a tag word right before an inline box, and an optional outline after it
	mentionRe = regexp.MustCompile(`(\w+) <box>\[\[(\d+), (\d+), (\d+), (\d+)\]\](?:</box>)?(?: with an? (\w+) outline)?`)
	globalRe  = regexp.MustCompile(`(\w+) (\w+) background with an? (\w+) texture`)
	relRe     = regexp.MustCompile(`^the (\w+) (\w+) (?:(?:is|lies|sits) )?(to the left of|above|inside|overlapping|overlaps|larger than|bigger than) the (\w+) (\w+)$`)
)

// Mention is an entity named in a caption: its tag, its inline box and the
// attributes of its noun phrase ("size:small", "colour:red", "fill:dotted",
// "outline:dark").
type Mention struct {
	Tag   string
	Box   chain.Box
	Attrs []string
}

// has reports whether the mention carries attribute a.
func (m Mention) has(a string) bool {
	for _, x := range m.Attrs {
		if x == a {
			return true
		}
	}
	return false
}

// NamedRelation is a relation sentence of a caption, its entities named
// "colour tag" as the caption names them ("red circle").
type NamedRelation struct {
	Subj, Rel, Obj string
}

// Caption is what ParseCaption reads from a caption.
type Caption struct {
	Mentions  []Mention
	Relations []NamedRelation
	Global    []string // "brightness:dark", "colour:blue", "texture:plain"
}

// ParseCaption reads a caption of the scenes' closed grammar, sentence by
// sentence (sentences end at '.'): a sentence with inline boxes yields a
// Mention per box, whose tag is the word before the box and whose attributes
// are the size, colour and fill words right before the tag (read backwards
// until a word of none of these kinds) plus "with a X outline" after the
// box; a sentence "… B C background with a T texture …" gives the global
// state; "The C1 T1 [is|lies|sits] REL the C2 T2" gives a relation. Anything
// else, and any malformed part, is skipped: the parser never fails.
func ParseCaption(text string) Caption {
	var c Caption
	for _, sent := range strings.Split(text, ".") {
		lower := strings.ToLower(strings.TrimSpace(sent))
		if strings.Contains(lower, "<box>") {
			c.Mentions = append(c.Mentions, parseMentions(lower)...)
			continue
		}
		if m := globalRe.FindStringSubmatch(lower); m != nil {
			c.Global = append(c.Global, "brightness:"+m[1], "colour:"+m[2], "texture:"+m[3])
			continue
		}
		if m := relRe.FindStringSubmatch(lower); m != nil {
			c.Relations = append(c.Relations, NamedRelation{
				Subj: m[1] + " " + m[2], Rel: relationPhrases[m[3]], Obj: m[4] + " " + m[5]})
		}
	}
	return c
}

// parseMentions reads the inline boxes of one lower-case sentence.
func parseMentions(sent string) []Mention {
	var out []Mention
	prev := 0
	for _, loc := range mentionRe.FindAllStringSubmatchIndex(sent, -1) {
		var box chain.Box
		ok := true
		for k := range 4 {
			v, err := strconv.Atoi(sent[loc[4+2*k]:loc[5+2*k]])
			if err != nil || v > 1000 {
				ok = false
				break
			}
			box[k] = v
		}
		before := strings.Fields(sent[prev:loc[2]])
		prev = loc[1]
		if !ok {
			continue
		}
		m := Mention{Tag: sent[loc[2]:loc[3]], Box: box}
	words:
		for i := len(before) - 1; i >= 0 && len(before)-i <= 3; i-- {
			w := before[i]
			switch {
			case sizeWords[w]:
				m.Attrs = append(m.Attrs, "size:"+w)
			case fillWords[w]:
				m.Attrs = append(m.Attrs, "fill:"+w)
			case colourWords[w]:
				m.Attrs = append(m.Attrs, "colour:"+w)
			default:
				break words // the first word of another kind ends the noun phrase
			}
		}
		if loc[12] >= 0 {
			m.Attrs = append(m.Attrs, "outline:"+sent[loc[12]:loc[13]])
		}
		out = append(out, m)
	}
	return out
}
