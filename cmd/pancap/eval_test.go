package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/eval"
)

// writeScenes writes a one-image split whose truth is a dog where the
// scripted backend finds one and a cat it misses.
func writeScenes(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(drawTestPNG(t)) // holds in.png
	scene := `{"id": "s-0", "image": "in.png", "width": 40, "height": 20, ` +
		`"entities": [{"tag": "dog", "colour": "red", "size": "large", "fill": "solid", "outline": "none", "box": [100, 200, 500, 700]}, ` +
		`{"tag": "cat", "colour": "blue", "size": "small", "fill": "solid", "outline": "none", "box": [600, 200, 700, 300]}], ` +
		`"relations": [[0, "left of", 1]], "facts": [[0, "left of", 1]], ` +
		`"global": {"colour": "gray", "brightness": "dark", "texture": "plain"}}`
	if err := os.WriteFile(filepath.Join(dir, "scenes.jsonl"), []byte(scene+"\n"+scene+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// evalReport runs `pancap eval --json` with args against the server at
// addr and decodes its report.
func evalReport(t *testing.T, addr string, args ...string) eval.Report {
	t.Helper()
	out, errOut, err := run(t, append([]string{"eval", "--addr", addr, "--json"}, args...)...)
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, errOut)
	}
	var rep eval.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return rep
}

func TestEvalJSON(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	rep := evalReport(t, addr, "--data", writeScenes(t), "--limit", "1")
	if rep.Images != 1 || len(rep.Dimensions) != 7 {
		t.Fatalf("report %+v", rep)
	}
	// the caption "A dog <box>[[100, 200, 500, 700]]</box> sleeps." finds the
	// dog (tag and location) but states no attribute, relation or global.
	want := map[string]eval.Counts{
		"tag":           {Pred: 1, GT: 2, HitPred: 1, HitGT: 1},
		"location":      {Pred: 1, GT: 2, HitPred: 1, HitGT: 1},
		"attribute":     {Pred: 0, GT: 6},
		"relation":      {Pred: 0, GT: 1},
		"global":        {Pred: 0, GT: 3},
		"list tag":      {Pred: 1, GT: 2, HitPred: 1, HitGT: 1},
		"list location": {Pred: 1, GT: 2, HitPred: 1, HitGT: 1},
	}
	for _, d := range rep.Dimensions {
		if d.Counts != want[d.Name] {
			t.Errorf("%s: %+v, want %+v", d.Name, d.Counts, want[d.Name])
		}
	}
	if f := 2.0 / 3; rep.Overall < 100*2*f-1e-9 || rep.Overall > 100*2*f+1e-9 {
		t.Errorf("overall %v, want %v", rep.Overall, 200*f)
	}
}

func TestEvalTableAndErrors(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	dir := writeScenes(t)
	out, _, err := run(t, "eval", "--addr", addr, "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "over 2 images") || !strings.Contains(out, "list location") {
		t.Errorf("table:\n%s", out)
	}
	if _, _, err := run(t, "eval", "--addr", addr, "--data", t.TempDir()); err == nil {
		t.Error("missing scenes.jsonl: no error")
	}
	if _, _, err := run(t, "eval", "--addr", addr, "--data", dir, "--concurrency", "0"); err == nil {
		t.Error("--concurrency 0: no error")
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "scenes.jsonl"), []byte(`{"id": "x", "image": "absent.png"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "eval", "--addr", addr, "--data", bad); err == nil || !strings.Contains(err.Error(), "absent.png") {
		t.Errorf("missing image: err %v", err)
	}
}
