// Package wordnet reads the noun part of a WordNet 3.0 database in the
// Princeton file format (Debian's wordnet-base installs it in
// /usr/share/wordnet) and answers the one question PancapScore asks of it:
// the lemma names of every noun synset of a word, found the way NLTK's
// wn.synsets(word, 'n') finds them (lower-casing, the exception list, then
// morphy's suffix rules).
//
// Only index.noun, data.noun and noun.exc are read. data.noun lines are
// keyed by the offset written at the start of each line rather than by
// their byte position, so a database cut down to a few synsets (the test
// fixtures) answers exactly like the whole one for the words it covers.
package wordnet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDir is where Debian's wordnet-base package installs the database.
const DefaultDir = "/usr/share/wordnet"

// maxLine bounds one line of a database file.
const maxLine = 1 << 20

// WordNet is a loaded noun database. It is safe for concurrent use.
type WordNet struct {
	index      map[string][]uint64 // lower-case lemma → synset offsets
	lemmas     map[uint64][]string // synset offset → lemma names, as written
	exceptions map[string][]string // inflected form → base forms
}

// Open reads index.noun, data.noun and noun.exc from dir.
func Open(dir string) (*WordNet, error) {
	w := &WordNet{}
	var err error
	if w.index, err = readFile(filepath.Join(dir, "index.noun"), parseIndex); err != nil {
		return nil, err
	}
	if w.lemmas, err = readFile(filepath.Join(dir, "data.noun"), parseData); err != nil {
		return nil, err
	}
	if w.exceptions, err = readFile(filepath.Join(dir, "noun.exc"), parseExceptions); err != nil {
		return nil, err
	}
	return w, nil
}

func readFile[M any](path string, parse func(io.Reader) (M, error)) (M, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero M
		return zero, fmt.Errorf("wordnet: %w", err)
	}
	defer f.Close()
	m, err := parse(f)
	if err != nil {
		return m, fmt.Errorf("wordnet: %s: %w", path, err)
	}
	return m, nil
}

// lines calls fn with every line of r that is not part of the licence
// header (those start with a space), numbered from 1.
func lines(r io.Reader, fn func(n int, line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(line) == 0 || line[0] == ' ' {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	return sc.Err()
}

// parseIndex reads index.noun: lemma pos synset_cnt p_cnt ptr... sense_cnt
// tagsense_cnt offset..., as NLTK's reader checks it.
func parseIndex(r io.Reader) (map[string][]uint64, error) {
	index := map[string][]uint64{}
	err := lines(r, func(_ int, line []byte) error {
		f := strings.Fields(string(line))
		if len(f) < 4 {
			return fmt.Errorf("short index line")
		}
		nSynsets, err := strconv.Atoi(f[2])
		if err != nil || nSynsets <= 0 {
			return fmt.Errorf("bad synset count %q", f[2])
		}
		nPointers, err := strconv.Atoi(f[3])
		if err != nil || nPointers < 0 || len(f) != 4+nPointers+2+nSynsets {
			return fmt.Errorf("bad pointer count %q or field count %d", f[3], len(f))
		}
		if f[4+nPointers] != f[2] {
			return fmt.Errorf("sense count %q differs from synset count %q", f[4+nPointers], f[2])
		}
		offsets := make([]uint64, nSynsets)
		for i, s := range f[4+nPointers+2:] {
			if offsets[i], err = strconv.ParseUint(s, 10, 64); err != nil {
				return fmt.Errorf("bad offset %q", s)
			}
		}
		index[f[0]] = offsets
		return nil
	})
	return index, err
}

// parseData reads the lemma names of every synset of data.noun: offset
// lex_filenum ss_type w_cnt(hex) word lex_id ...
func parseData(r io.Reader) (map[uint64][]string, error) {
	lemmas := map[uint64][]string{}
	err := lines(r, func(_ int, line []byte) error {
		if i := bytes.IndexByte(line, '|'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(string(line))
		if len(f) < 4 {
			return fmt.Errorf("short data line")
		}
		offset, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("bad offset %q", f[0])
		}
		n, err := strconv.ParseUint(f[3], 16, 16)
		if err != nil || len(f) < 4+2*int(n) {
			return fmt.Errorf("bad word count %q", f[3])
		}
		names := make([]string, n)
		for i := range names {
			names[i] = stripSyntacticMarker(f[4+2*i])
		}
		lemmas[offset] = names
		return nil
	})
	return lemmas, err
}

// stripSyntacticMarker drops an adjective's trailing "(a)", "(p)" or
// "(ip)" marker, as NLTK does for every lemma name (nouns carry none).
func stripSyntacticMarker(name string) string {
	if strings.HasSuffix(name, ")") {
		if i := strings.IndexByte(name, '('); i >= 0 {
			return name[:i]
		}
	}
	return name
}

// parseExceptions reads noun.exc: an inflected form and its base forms per
// line; a later line for the same form replaces an earlier one.
func parseExceptions(r io.Reader) (map[string][]string, error) {
	exc := map[string][]string{}
	err := lines(r, func(_ int, line []byte) error {
		f := strings.Fields(string(line))
		if len(f) == 0 {
			return fmt.Errorf("blank exception line")
		}
		exc[f[0]] = f[1:]
		return nil
	})
	return exc, err
}
