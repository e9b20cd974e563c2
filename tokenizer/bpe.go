package tokenizer

// symbol is a span [start, end) of the normalised text in the BPE working
// list; a symbol merged into its left neighbour has start == end.
type symbol struct {
	start, end int
	prev, next int  // neighbour indexes, -1 at the ends
	freeze     bool // a user-defined symbol: never merged
}

// pair is a candidate merge of symbols left and right into a piece of size
// bytes with the given score.
type pair struct {
	left, right int
	score       float32
	size        int
}

// agenda is a binary max-heap of candidate merges ordered as sentencepiece
// orders them: higher score first, then the leftmost.
type agenda []pair

// before reports whether a pops before b.
func (a pair) before(b pair) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.left < b.left
}

func (h *agenda) push(p pair) {
	*h = append(*h, p)
	a := *h
	for i := len(a) - 1; i > 0; {
		parent := (i - 1) / 2
		if !a[i].before(a[parent]) {
			break
		}
		a[i], a[parent] = a[parent], a[i]
		i = parent
	}
}

func (h *agenda) pop() pair {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	for i := 0; ; {
		best, l, r := i, 2*i+1, 2*i+2
		if l < n && a[l].before(a[best]) {
			best = l
		}
		if r < n && a[r].before(a[best]) {
			best = r
		}
		if best == i {
			break
		}
		a[i], a[best] = a[best], a[i]
		i = best
	}
	*h = a
	return top
}

// bpe splits normalised text into pieces with sentencepiece's BPE algorithm
// (bpe_model.cc): start from characters (user-defined symbols whole),
// repeatedly merge the adjacent pair whose concatenation is a vocabulary
// piece of the highest score (ties: leftmost), then split merged Unused
// pieces back into the pieces they were made of. The result are substrings
// of norm; ones missing from the vocabulary are single characters.
func (t *Tokenizer) bpe(norm string) []string {
	syms := make([]symbol, 0, len(norm))
	for i := 0; i < len(norm); {
		n, freeze := t.prefixMatch(norm[i:])
		s := symbol{start: i, end: i + n, prev: len(syms) - 1, next: len(syms) + 1, freeze: freeze}
		i += n
		if i == len(norm) {
			s.next = -1
		}
		syms = append(syms, s)
	}
	ag := make(agenda, 0, len(syms))
	var revMerge map[string][2]string
	add := func(l, r int) {
		if l < 0 || r < 0 || syms[l].freeze || syms[r].freeze {
			return
		}
		piece := norm[syms[l].start:syms[r].end]
		id, ok := t.pieces[piece]
		if !ok {
			return
		}
		ag.push(pair{left: l, right: r, score: t.model.Pieces[id].Score, size: len(piece)})
		if t.model.Pieces[id].Type == Unused {
			if revMerge == nil {
				revMerge = make(map[string][2]string)
			}
			revMerge[piece] = [2]string{norm[syms[l].start:syms[l].end], norm[syms[r].start:syms[r].end]}
		}
	}
	for i := 1; i < len(syms); i++ {
		add(i-1, i)
	}
	for len(ag) > 0 {
		top := ag.pop()
		l, r := &syms[top.left], &syms[top.right]
		// Skip merges made stale by an earlier merge of either side.
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = top.left
		}
		r.start = r.end
		add(l.prev, top.left)
		add(top.left, l.next)
	}
	out := make([]string, 0, len(syms))
	for i := 0; i >= 0 && len(syms) > 0; i = syms[i].next {
		out = t.resegment(out, norm[syms[i].start:syms[i].end], revMerge)
	}
	return out
}

// resegment appends w, split back into its parts while it is an Unused
// piece made by a recorded merge.
func (t *Tokenizer) resegment(out []string, w string, revMerge map[string][2]string) []string {
	id, ok := t.pieces[w]
	if !ok || t.model.Pieces[id].Type != Unused {
		return append(out, w)
	}
	parts, ok := revMerge[w]
	if !ok {
		return append(out, w)
	}
	out = t.resegment(out, parts[0], revMerge)
	return t.resegment(out, parts[1], revMerge)
}

// prefixMatch returns the length of the first symbol of s: the longest
// user-defined symbol s starts with (frozen), else one UTF-8 character as
// sentencepiece measures it from the lead byte.
func (t *Tokenizer) prefixMatch(s string) (int, bool) {
	for n := min(t.userMax, len(s)); n > 0; n-- {
		if t.user[s[:n]] {
			return n, true
		}
	}
	return min(len(s), utf8Len[s[0]>>4]), false
}

// utf8Len is sentencepiece's OneCharLen table, indexed by the lead byte's
// high nibble.
var utf8Len = [16]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4}
