package wordnet

import (
	"slices"
	"strings"
)

// nounRules are morphy's noun suffix substitutions, in NLTK's order.
var nounRules = [...]struct{ old, new string }{
	{"s", ""}, {"ses", "s"}, {"ves", "f"}, {"xes", "x"}, {"zes", "z"},
	{"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"},
}

// Synonyms returns the lemma names (as the database writes them: case kept,
// words joined by "_") of every noun synset of word, sorted and without
// repeats: the set NLTK builds from wn.synsets(word, 'n') and each synset's
// lemmas().
func (w *WordNet) Synonyms(word string) []string {
	var names []string
	for _, form := range w.morphy(lower(word)) {
		for _, off := range w.index[form] {
			names = append(names, w.lemmas[off]...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// lower is Python's str.lower() as far as it can reach WordNet's ASCII
// index: Go's strings.ToLower but for U+0130, which Python lowers to
// "i" + U+0307 (no index entry) and Go to a plain "i".
func lower(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "\u0130", "i\u0307"))
}

// morphy returns the base forms of form (already lower-case) that are noun
// lemmas: the exception list when it names form, else form and one round
// of suffix rules, else further rounds until some round finds one. Repeated
// forms within a round are dropped, which leaves the answer unchanged and
// keeps the rounds small.
func (w *WordNet) morphy(form string) []string {
	if exc, ok := w.exceptions[form]; ok {
		return w.known(append([]string{form}, exc...))
	}
	forms := applyRules([]string{form})
	if found := w.known(append([]string{form}, forms...)); len(found) > 0 {
		return found
	}
	for len(forms) > 0 {
		forms = applyRules(forms)
		if found := w.known(forms); len(found) > 0 {
			return found
		}
	}
	return nil
}

// applyRules applies every matching suffix rule to every form, once.
func applyRules(forms []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range forms {
		for _, r := range nounRules {
			if strings.HasSuffix(f, r.old) {
				g := f[:len(f)-len(r.old)] + r.new
				if !seen[g] {
					seen[g] = true
					out = append(out, g)
				}
			}
		}
	}
	return out
}

// known keeps the forms that are noun lemmas, first occurrences only.
func (w *WordNet) known(forms []string) []string {
	var out []string
	for _, f := range forms {
		if _, ok := w.index[f]; ok && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}
