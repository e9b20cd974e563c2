package chain

import (
	"strconv"
	"strings"
)

// The pieces of the hand-off syntax.
const (
	itemSep  = "</box>, " // between two items of a list
	boxOpen  = "<box>[["  // opens a box
	boxClose = "]]"       // closes the coordinates
	boxEnd   = "</box>"   // ends a box
	coordSep = ", "       // between two coordinates
	tagSep   = " "        // between a tag and its box
	listSep  = ", "       // between two serialised items
)

// ParseBoxes parses stage 1's answer as the authors' script does. The text
// is split on "</box>, "; each item must be
//
//	<box>[[a, b, c, d]]        (or with a trailing "</box>", which only the
//	                            last item still has after the split)
//
// where "a, b, c, d" split on ", " gives exactly four strings that Python's
// int() accepts (see parsePyInt: surrounding whitespace, a sign, leading
// zeros, underscores between digits and Unicode digits are all accepted, and
// no range check is made). Parsing stops at the first malformed item,
// keeping what was parsed before it; a box equal to an earlier one is
// dropped. Empty text yields nil.
func ParseBoxes(text string) []Box {
	var boxes []Box
	for _, item := range strings.Split(text, itemSep) {
		rest, ok := strings.CutPrefix(item, boxOpen)
		if !ok {
			break
		}
		b, ok := parseCoords(rest)
		if !ok {
			break
		}
		if !containsBox(boxes, b) {
			boxes = append(boxes, b)
		}
	}
	return boxes
}

// ParseTagged parses the answer of stage 2 or 3 as the authors' script does.
// The text is split on "</box>, "; each item must be
//
//	tag <box>[[a, b, c, d]]    (or with a trailing "</box>")
//
// where the box starts at the item's LAST " <box>[[" and the tag is
// everything before that space, kept verbatim (it may be empty or contain
// commas, "<box>" or "]]"). The coordinates follow ParseBoxes's rule.
// Parsing stops at the first malformed item (a "None ..." answer is
// malformed at once); an item whose (tag, box) equals an earlier one is
// dropped. The entities have only Tag and Box set: Merge stamps their stage
// and SetPixels their pixel boxes.
func ParseTagged(text string) []Entity {
	var ents []Entity
	for _, item := range strings.Split(text, itemSep) {
		i := strings.LastIndex(item, tagSep+boxOpen)
		if i < 0 {
			break
		}
		b, ok := parseCoords(item[i+len(tagSep+boxOpen):])
		if !ok {
			break
		}
		e := Entity{Tag: item[:i], Box: b}
		if !containsEntity(ents, e) {
			ents = append(ents, e)
		}
	}
	return ents
}

// parseCoords parses "a, b, c, d]]" or "a, b, c, d]]</box>": the text after
// "<box>[[" up to the end of an item.
func parseCoords(s string) (Box, bool) {
	s = strings.TrimSuffix(s, boxEnd)
	s, ok := strings.CutSuffix(s, boxClose)
	if !ok {
		return Box{}, false
	}
	var b Box
	for k := range b {
		field, rest, more := strings.Cut(s, coordSep)
		if more != (k < len(b)-1) {
			return Box{}, false // fewer or more than four fields
		}
		v, ok := parsePyInt(field)
		if !ok {
			return Box{}, false
		}
		b[k] = v
		s = rest
	}
	return b, true
}

// Merge appends stage 3's entities to stage 2's, as the authors' script
// does, unless stage 3's text starts with "None" (stage 3 found nothing
// missing). Entities whose (tag, box) equals an earlier one are dropped.
// The result is a new slice whose entities carry Stage Tag or Discover.
func Merge(stage2, stage3 []Entity, stage3Text string) []Entity {
	out := make([]Entity, 0, len(stage2)+len(stage3))
	add := func(ents []Entity, st Stage) {
		for _, e := range ents {
			e.Stage = st
			if !containsEntity(out, e) {
				out = append(out, e)
			}
		}
	}
	add(stage2, Tag)
	if !strings.HasPrefix(stage3Text, "None") {
		add(stage3, Discover)
	}
	return out
}

// SerializeBoxes writes boxes as stage 2's prompt expects them:
// "<box>[[a, b, c, d]]</box>" joined by ", ".
func SerializeBoxes(boxes []Box) string {
	var sb strings.Builder
	for i, b := range boxes {
		if i > 0 {
			sb.WriteString(listSep)
		}
		writeBox(&sb, b)
	}
	return sb.String()
}

// SerializeTagged writes entities as stages 3 and 4 expect them:
// "tag <box>[[a, b, c, d]]</box>" joined by ", ".
func SerializeTagged(ents []Entity) string {
	var sb strings.Builder
	for i, e := range ents {
		if i > 0 {
			sb.WriteString(listSep)
		}
		sb.WriteString(e.Tag)
		sb.WriteString(tagSep)
		writeBox(&sb, e.Box)
	}
	return sb.String()
}

// writeBox writes "<box>[[a, b, c, d]]</box>".
func writeBox(sb *strings.Builder, b Box) {
	sb.WriteString(boxOpen)
	for k, v := range b {
		if k > 0 {
			sb.WriteString(coordSep)
		}
		sb.WriteString(strconv.Itoa(v))
	}
	sb.WriteString(boxClose)
	sb.WriteString(boxEnd)
}

// containsBox reports whether boxes holds b.
func containsBox(boxes []Box, b Box) bool {
	for _, x := range boxes {
		if x == b {
			return true
		}
	}
	return false
}

// containsEntity reports whether ents holds an entity with e's tag and box.
func containsEntity(ents []Entity, e Entity) bool {
	for _, x := range ents {
		if x.Tag == e.Tag && x.Box == e.Box {
			return true
		}
	}
	return false
}
