package chain

import "strings"

// Mentions returns the boxes written inline in a stage-4 caption, in order,
// each tagged with the words that name it. Every "<box>[[" starts a box that
// ends at the next "]]" (and an optional "</box>"); when that stretch holds
// another "<box>[[", the last one counts. A box whose coordinates are
// malformed (see ParseBoxes) is skipped, not fatal. Duplicates are kept: a
// caption may mention an entity twice. Entities carry Stage Caption.
//
// The tag is a heuristic over the text between the previous box (or the
// caption's start) and this one:
//  1. keep the clause right before the box: the text after the last of
//     . ! ? ; : , or a newline;
//  2. find linking words (is, are, located, positioned, standing, bounding,
//     …); with none, the whole clause names the box ("green stems and
//     leaves <box>");
//  3. else, when words follow the last linking word and do not start with a
//     preposition, they name the box ("there is a dog <box>" → "dog");
//  4. else the words before the first linking word name it ("the bud is
//     located at <box>" → "bud", "the wall's bounding box is <box>" →
//     "wall", "the main flower is positioned at the left <box>" → "main
//     flower");
//  5. of the words so chosen, the noun phrase right before the box names
//     it: the words after the last determiner ("the scene contains a medium
//     yellow square" → "medium yellow square", "irons clothes on a board" →
//     "board");
//  6. leading articles, conjunctions, prepositions and pronouns ("and the",
//     "above the", "there") and a trailing "'s" are dropped, and words are
//     joined by single spaces.
//
// Tags never contain a linking word, so SerializeTagged(Mentions(c)) parses
// back to the same mentions.
func Mentions(caption string) []Entity {
	var ents []Entity
	ctx := 0 // start of the text before the next box
	for {
		i := strings.Index(caption[ctx:], boxOpen)
		if i < 0 {
			return ents
		}
		i += ctx
		j := strings.Index(caption[i+len(boxOpen):], boxClose)
		if j < 0 {
			return ents
		}
		shut := i + len(boxOpen) + j
		i += strings.LastIndex(caption[i:shut], boxOpen)
		end := shut + len(boxClose)
		if strings.HasPrefix(caption[end:], boxEnd) {
			end += len(boxEnd)
		}
		if b, ok := parseCoords(caption[i+len(boxOpen) : shut+len(boxClose)]); ok {
			ents = append(ents, Entity{Tag: mentionTag(caption[ctx:i]), Box: b, Stage: Caption})
		}
		ctx = end
	}
}

// mentionTag applies Mentions's naming rule to the text before a box.
func mentionTag(text string) string {
	if k := strings.LastIndexAny(text, ".!?;:,\n"); k >= 0 {
		text = text[k+1:]
	}
	words := strings.Fields(text)
	first, last := -1, -1
	for k, w := range words {
		if linkingWords[wordKey(w)] {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	if first < 0 {
		return trimTag(nounPhrase(words))
	}
	if after := words[last+1:]; len(after) > 0 && !prepositions[wordKey(after[0])] {
		if tag := trimTag(nounPhrase(after)); tag != "" {
			return tag
		}
	}
	return trimTag(nounPhrase(words[:first]))
}

// nounPhrase keeps the noun phrase that ends words: what follows the last
// determiner, when anything follows it, else all of words.
func nounPhrase(words []string) []string {
	for k := len(words) - 2; k >= 0; k-- {
		if determiners[wordKey(words[k])] {
			return words[k+1:]
		}
	}
	return words
}

// trimTag drops leading filler words and prepositions and a trailing "'s"
// until neither is left, and joins the rest with single spaces.
func trimTag(words []string) string {
	for changed := true; changed; {
		changed = false
		for len(words) > 0 && (fillerWords[wordKey(words[0])] || prepositions[wordKey(words[0])]) {
			words = words[1:]
			changed = true
		}
		if n := len(words); n > 0 {
			if s, ok := cutPossessive(words[n-1]); ok {
				words = append(words[:n-1:n-1], s) // a copy: the caller's slice stays as is
				if s == "" {
					words = words[:n-1]
				}
				changed = true
			}
		}
	}
	return strings.Join(words, " ")
}

// cutPossessive removes one trailing "'s" or "’s" from w.
func cutPossessive(w string) (string, bool) {
	for _, suffix := range []string{"'s", "’s"} {
		if s, ok := strings.CutSuffix(w, suffix); ok {
			return s, true
		}
	}
	return w, false
}

// wordKey is the lower-case form of w without surrounding punctuation and
// trailing possessives, used to classify words.
func wordKey(w string) string {
	w = strings.ToLower(strings.Trim(w, `"'()[]{}*`))
	for ok := true; ok; {
		w, ok = cutPossessive(w)
	}
	return w
}

// set builds a word set.
func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// linkingWords join a name to its location in a caption.
var linkingWords = set("is", "are", "was", "were", "be", "being", "been",
	"located", "positioned", "situated", "placed", "lies", "lie", "lying",
	"sits", "sit", "sitting", "stands", "stand", "standing", "appears", "appear",
	"spans", "span", "spanning", "occupies", "occupying", "covers", "covering",
	"found", "seen", "visible", "bounding")

// prepositions start a location phrase, never a name.
var prepositions = set("at", "in", "on", "near", "to", "of", "from", "by",
	"above", "below", "under", "behind", "beside", "next", "between", "inside",
	"outside", "across", "along", "around", "over", "atop", "into", "onto",
	"within", "against", "beneath", "underneath", "toward", "towards")

// determiners open a noun phrase.
var determiners = set("a", "an", "the", "this", "that", "these", "those",
	"its", "their", "our", "my", "your", "another", "each", "every")

// fillerWords never start a tag.
var fillerWords = set("a", "an", "the", "and", "or", "but", "while", "with",
	"there", "here", "this", "that", "these", "those", "its", "their", "his",
	"her", "which", "where", "also", "then", "it", "they")
