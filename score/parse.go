package score

import (
	"strconv"
	"strings"
)

// Content is what the judge's "ID | Type -->> Tuple" lines say about one
// caption, read as the authors' parse_content reads them
// (pancapscore/eval_alldims.py and eval_tag_and_loc.py at b8012a4).
type Content struct {
	// Entities in first-seen order of their key "entity ID"; a later line
	// with the same ID renames the entity in place.
	Entities []Entity
	// Locations maps an entity key to its box; a later line replaces it.
	Locations map[string]Box
	// Attributes are (entity key, sentence or question pair) lines.
	Attributes []Attribute
	// Relations are (entity key, entity key, sentence or question pair) lines.
	Relations []Relation
	// Globals are the global-status lines (and attribute lines about
	// "global" or "image").
	Globals []string
	// Lines are the entity and location lines as the authors pass them on
	// to the answering prompt: entity lines as written, location lines
	// renumbered to follow the lines before them.
	Lines []string
	// Parsed counts the lines that passed the basic parse, Invalid those of
	// them that were then dropped (unknown entity, bad box, ...).
	Parsed, Invalid int

	entityAt map[string]int
}

// Entity is an entity line: its key ("entity 3") and its name ("dog").
type Entity struct{ Key, Name string }

// Attribute is an attribute line.
type Attribute struct{ Entity, Text string }

// Relation is a relation line.
type Relation struct{ Subject, Object, Text string }

// Box is a location: x1, y1, x2, y2 as written (normalised to [0, 1] by
// the authors' prompt, not checked).
type Box [4]float64

// hasEntity reports whether key names a known entity.
func (c *Content) hasEntity(key string) bool {
	_, ok := c.entityAt[key]
	return ok
}

// line is one judge line after the basic parse.
type line struct {
	idx     string // str(int(ID))
	cls     string
	val     []string
	content string // the line with "_" replaced by " "
}

// basicParse is the first half of parse_content: the ID must be an integer,
// the type one of the five, the tuple split on commas as each type expects.
// ok is false for every line the authors skip.
func basicParse(raw string) (l line, ok bool) {
	head, _, _ := strings.Cut(raw, "|")
	if l.idx, ok = pyInt(strings.TrimRight(head, " ")); !ok {
		return l, false
	}
	l.content = strings.ReplaceAll(raw, "_", " ")
	parts := strings.Split(l.content, "|")
	if len(parts) < 2 {
		return l, false
	}
	typ := strings.Split(strings.TrimLeft(parts[1], " "), " -->> ")
	l.cls = typ[0]
	switch l.cls {
	case "entity", "location", "attribute", "relation", "global":
	default:
		return l, false
	}
	if len(typ) < 2 {
		return l, false
	}
	v := strings.Split(strings.TrimRight(strings.TrimLeft(typ[1], "("), ") "), ",")
	rest := func(from int) string {
		return strings.TrimRight(strings.TrimLeft(strings.Join(v[from:], ","), "\" "), "\"")
	}
	switch l.cls {
	case "entity":
		for i := range v {
			v[i] = strings.Trim(v[i], " ")
		}
		l.val = v
	case "attribute", "location":
		l.val = []string{strings.Trim(v[0], " "), rest(1)}
	case "relation":
		if len(v) < 2 {
			return l, false
		}
		l.val = []string{strings.Trim(v[0], " "), strings.Trim(v[1], " "), rest(2)}
	case "global":
		l.val = []string{rest(0)}
	}
	return l, true
}

// Parse reads a judge output. answers selects the reading of the answering
// step's output, whose attribute and relation lines carry answers in place
// of sentences and name entities of the other caption.
func Parse(text string, answers bool) *Content {
	c := &Content{Locations: map[string]Box{}, entityAt: map[string]int{}}
	for _, raw := range strings.Split(text, "\n") {
		if raw == "" {
			continue
		}
		l, ok := basicParse(raw)
		if !ok {
			continue
		}
		c.Parsed++
		if !c.add(l, answers) {
			c.Invalid++
		}
	}
	return c
}

// add is the second half of parse_content for one line; it reports false
// for a line the authors count as invalid.
func (c *Content) add(l line, answers bool) bool {
	v := l.val
	switch l.cls {
	case "entity":
		key := "entity " + l.idx
		if i, ok := c.entityAt[key]; ok {
			c.Entities[i].Name = v[len(v)-1]
		} else {
			c.entityAt[key] = len(c.Entities)
			c.Entities = append(c.Entities, Entity{key, v[len(v)-1]})
		}
		c.Lines = append(c.Lines, l.content+"\n")
	case "attribute":
		switch {
		case answers:
			if !strings.HasPrefix(v[0], "entity") {
				return false
			}
			c.Attributes = append(c.Attributes, Attribute{v[0], v[1]})
		case strings.HasPrefix(v[0], "entity"):
			if !c.hasEntity(v[0]) || !strings.Contains(v[1], v[0]) {
				return false
			}
			c.Attributes = append(c.Attributes, Attribute{v[0], v[1]})
		case v[0] == "global" || v[0] == "image":
			c.Globals = append(c.Globals, v[1])
		case c.hasEntity("entity " + v[0]):
			c.Attributes = append(c.Attributes, Attribute{"entity " + v[0], v[1]})
		default:
			return false
		}
	case "relation":
		return c.addRelation(v, answers)
	case "global":
		c.Globals = append(c.Globals, v[0])
	case "location":
		valid := c.addLocation(v)
		if n := strconv.Itoa(len(c.Lines) + 1); l.idx == n {
			c.Lines = append(c.Lines, l.content) // no newline: the authors' quirk
		} else {
			c.Lines = append(c.Lines, strings.ReplaceAll(l.content, l.idx, n)+"\n")
		}
		return valid
	}
	return true
}

func (c *Content) addRelation(v []string, answers bool) bool {
	bothEntity := strings.HasPrefix(v[0], "entity") && strings.HasPrefix(v[1], "entity")
	switch {
	case answers:
		if !bothEntity {
			return false
		}
		c.Relations = append(c.Relations, Relation{v[0], v[1], v[2]})
	case bothEntity:
		// The authors test the subject twice and never the object.
		if !c.hasEntity(v[0]) || !c.hasEntity(v[1]) || !strings.Contains(v[2], v[0]) {
			return false
		}
		c.Relations = append(c.Relations, Relation{v[0], v[1], v[2]})
	default:
		e1, e2 := v[0], v[1]
		if !strings.HasPrefix(e1, "entity") {
			e1 = "entity " + e1
		}
		if !strings.HasPrefix(e2, "entity") {
			e2 = "entity " + e2
		}
		if !c.hasEntity(e1) || !c.hasEntity(e2) || !strings.Contains(v[2], e1) || !strings.Contains(v[2], e2) {
			return false
		}
		c.Relations = append(c.Relations, Relation{e1, e2, v[2]})
	}
	return true
}

// addLocation records a location line's box for its entity.
func (c *Content) addLocation(v []string) bool {
	box, ok := parseBox(v[1])
	if !ok {
		return false
	}
	switch {
	case c.hasEntity(v[0]):
		c.Locations[v[0]] = box
	case !strings.HasPrefix(v[0], "entity") && c.hasEntity("entity "+v[0]):
		c.Locations["entity "+v[0]] = box
	default:
		return false
	}
	return true
}

// parseBox is the authors' str2loc: brackets stripped, four floats.
func parseBox(s string) (Box, bool) {
	f := strings.Split(strings.TrimRight(strings.TrimLeft(s, "["), "]"), ",")
	var b Box
	if len(f) != 4 {
		return b, false
	}
	for i, x := range f {
		v, ok := pyFloat(x)
		if !ok {
			return b, false
		}
		b[i] = v
	}
	return b, true
}
