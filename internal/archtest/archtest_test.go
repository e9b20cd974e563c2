package archtest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// module is this repository's module path.
const module = "github.com/pancap-serve/pancap/"

// rule says which packages of the module the packages matching its
// patterns may import directly.
type rule struct {
	packages []string // patterns: "a/b" exactly, "a/b/..." a/b and below
	allowed  []string // patterns; empty: none
}

// match reports whether pkg matches one of patterns.
func match(patterns []string, pkg string) bool {
	for _, p := range patterns {
		if p == "*" || p == pkg {
			return true
		}
		if base, ok := strings.CutSuffix(p, "/..."); ok && (pkg == base || strings.HasPrefix(pkg, base+"/")) {
			return true
		}
	}
	return false
}

// tableRow is one row of the rules table: two cells of backquoted patterns.
var tableRow = regexp.MustCompile("^\\|([^|]+)\\|([^|]+)\\|")

// code is one backquoted pattern of a cell.
var code = regexp.MustCompile("`([^`]+)`")

// readRules parses the import-rules table of ARCHITECTURE.md, between its
// BEGIN and END markers.
func readRules(t *testing.T) []rule {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rules []rule
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "<!-- BEGIN import rules"):
			in = true
		case strings.Contains(line, "<!-- END import rules"):
			in = false
		case in:
			m := tableRow.FindStringSubmatch(line)
			if m == nil || strings.HasPrefix(strings.TrimSpace(m[1]), "---") {
				continue
			}
			var r rule
			for _, c := range code.FindAllStringSubmatch(m[1], -1) {
				r.packages = append(r.packages, c[1])
			}
			for _, c := range code.FindAllStringSubmatch(m[2], -1) {
				r.allowed = append(r.allowed, c[1])
			}
			if len(r.packages) > 0 {
				rules = append(rules, r)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rules) < 10 {
		t.Fatalf("ARCHITECTURE.md: found %d import rules, the table is missing or malformed", len(rules))
	}
	return rules
}

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Imports    []string
}

// listPackages runs go list over the module (default build tags).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestImportsFollowArchitecture: every package of the module is governed
// by exactly one row of ARCHITECTURE.md's import rules, and imports only
// what its row allows, so the graph the document draws is the one go list
// sees. Test files are not checked.
func TestImportsFollowArchitecture(t *testing.T) {
	rules := readRules(t)
	for _, p := range listPackages(t) {
		name, ok := strings.CutPrefix(p.ImportPath, module)
		if !ok {
			continue
		}
		var governing []rule
		for _, r := range rules {
			if match(r.packages, name) {
				governing = append(governing, r)
			}
		}
		if len(governing) != 1 {
			t.Errorf("%s: governed by %d rows of ARCHITECTURE.md's import rules, want exactly 1", name, len(governing))
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok || dep == name {
				continue
			}
			if !match(governing[0].allowed, dep) {
				t.Errorf("%s imports %s, which ARCHITECTURE.md does not allow (allowed: %v)", name, dep, governing[0].allowed)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		patterns []string
		pkg      string
		want     bool
	}{
		{[]string{"model/..."}, "model", true},
		{[]string{"model/..."}, "model/llava", true},
		{[]string{"model/..."}, "modelx", false},
		{[]string{"model"}, "model/llava", false},
		{[]string{"*"}, "anything", true},
		{nil, "chain", false},
	} {
		if got := match(tt.patterns, tt.pkg); got != tt.want {
			t.Errorf("match(%v, %q) = %v, want %v", tt.patterns, tt.pkg, got, tt.want)
		}
	}
}
