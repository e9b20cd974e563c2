package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/server"
)

// scriptedBackend answers every chain with fixed stages, or with err.
type scriptedBackend struct{ err error }

func (b scriptedBackend) SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error) {
	n := req.Stages
	ch := make(chan batcher.Event, 64)
	defer close(ch)
	if b.err != nil {
		ch <- batcher.Event{Kind: batcher.EventDone, Err: b.err}
		return ch, nil
	}
	ch <- batcher.Event{Kind: batcher.EventQueued, Position: 1}
	ch <- batcher.Event{Kind: batcher.EventImageEncoded}
	res := &batcher.Result{Width: 40, Height: 20}
	ents := map[chain.Stage][]chain.Entity{
		chain.Localize: {{Box: chain.Box{100, 200, 500, 700}, Stage: chain.Localize}},
		chain.Tag:      {{Tag: "dog", Box: chain.Box{100, 200, 500, 700}, Pixel: chain.PixelBox{4, 0, 20, 8}, Stage: chain.Tag}},
		chain.Discover: {{Tag: "dog", Box: chain.Box{100, 200, 500, 700}, Pixel: chain.PixelBox{4, 0, 20, 8}, Stage: chain.Tag}},
	}
	texts := map[chain.Stage]string{
		chain.Localize: "<box>[[100, 200, 500, 700]]</box>",
		chain.Tag:      "dog <box>[[100, 200, 500, 700]]</box>",
		chain.Discover: "None",
		chain.Caption:  "A dog <box>[[100, 200, 500, 700]]</box> sleeps.",
	}
	for st := chain.Stage(1); st <= chain.Stage(n); st++ {
		ch <- batcher.Event{Kind: batcher.EventStageStarted, Stage: st, Usage: batcher.Usage{PromptTokens: 30}}
		ch <- batcher.Event{Kind: batcher.EventDelta, Stage: st, Text: texts[st]}
		ch <- batcher.Event{Kind: batcher.EventStageFinished, Stage: st, Text: texts[st], Entities: ents[st]}
		handoff := texts[chain.Tag]
		if st == chain.Localize {
			handoff = texts[st]
		} else if st == chain.Caption {
			handoff = ""
		}
		res.Stages = append(res.Stages, batcher.StageResult{Stage: st, Text: texts[st], Entities: ents[st], Finish: "eos", Handoff: handoff})
	}
	if n >= 2 {
		res.Entities = ents[chain.Tag]
	}
	if n == 4 {
		res.Caption = texts[chain.Caption]
	}
	ch <- batcher.Event{Kind: batcher.EventDone, Result: res}
	return ch, nil
}

func (b scriptedBackend) SubmitGenerate(context.Context, batcher.GenerateRequest) (<-chan batcher.Event, error) {
	return nil, batcher.ErrInvalidRequest
}

func (scriptedBackend) Spec() engine.Spec { return engine.Spec{Name: "scripted"} }
func (scriptedBackend) Ready() bool       { return true }

// serveBackend serves b on a free local port and returns its address.
func serveBackend(t *testing.T, b server.Backend) string {
	t.Helper()
	srv, err := server.New(server.Config{Logger: slog.New(slog.DiscardHandler), Version: testServerVersion}, b)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return lis.Addr().String()
}

// testServerVersion is the build serveBackend's server reports.
const testServerVersion = "v9.9.9 (commit 0123456789ab)"

// drawTestPNG draws a small test image and returns its path.
func drawTestPNG(t *testing.T) string {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, 40, 20))
	for i := range m.Pix {
		m.Pix[i] = uint8(i)
	}
	m.Set(0, 0, color.White)
	path := filepath.Join(t.TempDir(), "in.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, m); err != nil {
		t.Fatal(err)
	}
	return path
}

// run executes the CLI with args and returns its stdout and stderr.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func TestCaptionStreamsAndAnnotates(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	img := drawTestPNG(t)
	annotated := filepath.Join(t.TempDir(), "out.png")
	out, errOut, err := run(t, "caption", "--addr", addr, "--annotate", annotated, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"── stage 1/4 · localize ──\n<box>[[100, 200, 500, 700]]</box>\n",
		"── stage 3/4 · discover ──\nNone\n",
		"── stage 4/4 · caption ──\nA dog <box>[[100, 200, 500, 700]]</box> sleeps.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "done: 1 entities") {
		t.Errorf("stderr: %s", errOut)
	}
	f, err := os.Open(annotated)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || cfg.Width != 40 || cfg.Height != 20 {
		t.Fatalf("annotated image: %v, %v", cfg, err)
	}
}

func TestCaptionJSON(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	img := drawTestPNG(t)
	out, _, err := run(t, "caption", "--addr", addr, "--json", "--stages", "2", img, img)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for range 2 {
		var got jsonCaption
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.Image != img || len(got.Stages) != 2 || got.Width != 40 {
			t.Fatalf("%+v", got)
		}
		if h := got.Stages[0].Handoff; h != "<box>[[100, 200, 500, 700]]</box>" {
			t.Fatalf("stage 1 hand-off %q", h)
		}
		if h := got.Stages[1].Handoff; h != "dog <box>[[100, 200, 500, 700]]</box>" {
			t.Fatalf("stage 2 hand-off %q", h)
		}
		if len(got.Entities) != 1 || got.Entities[0].Tag != "dog" || got.Entities[0].Pixel[2] != 20 || got.Stages[1].FinishReason != "eos" {
			t.Fatalf("entities %+v", got)
		}
	}
	if dec.More() {
		t.Fatal("more than one object per image")
	}
}

func TestCaptionRPCError(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{err: batcher.ErrInvalidImage})
	_, _, err := run(t, "caption", "--addr", addr, drawTestPNG(t))
	if err == nil || !strings.Contains(err.Error(), "INVALID_ARGUMENT: invalid image") {
		t.Fatalf("got %v", err)
	}
}

func TestCaptionBadFlags(t *testing.T) {
	img := drawTestPNG(t)
	for _, args := range [][]string{
		{"caption", "--stages", "5", img},
		{"caption", "--max-new-tokens", "1,2,3,4,5", img},
		{"caption"},
	} {
		if _, _, err := run(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestCaptionChecksInputsFirst: an unwritable --annotate path, a missing
// or empty image fail before any call (the address is unreachable, so a
// call would fail differently), with one clear message.
func TestCaptionChecksInputsFirst(t *testing.T) {
	img := drawTestPNG(t)
	empty := filepath.Join(t.TempDir(), "empty.png")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--annotate", filepath.Join(dir, "no", "such", "dir.png"), img}, "--annotate: open "},
		{[]string{filepath.Join(dir, "missing.png")}, "no such file"},
		{[]string{empty}, "the file is empty"},
		{[]string{dir}, "not a regular file"},
	} {
		_, _, err := run(t, append([]string{"caption", "--addr", "127.0.0.1:1", "--timeout", "1s"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "annotate: annotate") {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the checks left files behind: %v", entries)
	}
}

// TestCaptionStagesZeroAndTruncation: --stages 0 runs all four stages, as in
// the API, and a stage cut off by its token limit is marked.
func TestCaptionStagesZeroAndTruncation(t *testing.T) {
	addr := serveBackend(t, truncatingBackend{})
	out, errOut, err := run(t, "caption", "--addr", addr, "--stages", "0", drawTestPNG(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "stage 4/4 · caption") {
		t.Errorf("--stages 0 did not run four stages:\n%s", out)
	}
	if !strings.Contains(errOut, "stage 4 cut off at its token limit") {
		t.Errorf("no truncation mark:\n%s", errOut)
	}
}

// truncatingBackend is scriptedBackend whose caption stage hits its limit.
type truncatingBackend struct{ scriptedBackend }

func (b truncatingBackend) SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error) {
	in, err := b.scriptedBackend.SubmitChain(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make(chan batcher.Event, 64)
	defer close(out)
	for ev := range in {
		if ev.Kind == batcher.EventStageFinished && ev.Stage == chain.Caption {
			ev.Finish = "length"
		}
		out <- ev
	}
	return out, nil
}

func TestCaptionRequestMaxNewTokens(t *testing.T) {
	fl := &captionFlags{stages: 3, maxNewTokens: []int{7}}
	req, err := fl.request([]byte("x"), "id")
	if err != nil {
		t.Fatal(err)
	}
	if len(req.MaxNewTokens) != 4 || req.MaxNewTokens[3] != 7 || req.Stages != 3 || req.RequestId != "id" {
		t.Fatalf("%v", req)
	}
	fl.maxNewTokens = []int{1, 2}
	if req, _ = fl.request(nil, ""); len(req.MaxNewTokens) != 2 || req.MaxNewTokens[1] != 2 {
		t.Fatalf("%v", req.MaxNewTokens)
	}
}

func TestEnvConfig(t *testing.T) {
	t.Setenv("PANCAP_ADDR", "10.0.0.1:9000")
	t.Setenv("PANCAP_METRICS_ADDR", "10.0.0.1:9001")
	t.Setenv("PANCAP_CHAIN_REUSE", "false")
	cmd := newServeCmd()
	if err := cmd.ParseFlags([]string{"--metrics-addr", ":1"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	if get("addr") != "10.0.0.1:9000" || get("metrics-addr") != ":1" || get("chain-reuse") != "false" {
		t.Fatalf("addr %s metrics %s chain-reuse %s", get("addr"), get("metrics-addr"), get("chain-reuse"))
	}
	t.Setenv("PANCAP_MAX_QUEUE", "many")
	if err := applyEnv(newServeCmd().Flags()); err == nil || !strings.Contains(err.Error(), "PANCAP_MAX_QUEUE") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestServeBadLogLevel(t *testing.T) {
	_, _, err := run(t, "serve", "--addr", "127.0.0.1:0", "--log-level", "loud")
	if err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("got %v", err)
	}
}

func TestCodeName(t *testing.T) {
	for in, want := range map[string]string{
		"InvalidArgument": "INVALID_ARGUMENT", "OK": "OK", "Canceled": "CANCELLED",
		"DeadlineExceeded": "DEADLINE_EXCEEDED", "Unavailable": "UNAVAILABLE",
	} {
		if got := codeName(in); got != want {
			t.Errorf("codeName(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "pancap dev (go") {
		t.Fatalf("%q, %v", out, err)
	}
}

func TestAnnotatePath(t *testing.T) {
	if annotatePath("a/out.png", 0, 1) != "a/out.png" || annotatePath("a/out.png", 1, 3) != "a/out-2.png" {
		t.Fatal("annotatePath")
	}
}

// TestUsageHints: a bad flag, wrong arguments or an unknown command point
// to the usage; an error of the work itself does not.
func TestUsageHints(t *testing.T) {
	for _, tt := range []struct {
		args []string
		hint string
	}{
		{[]string{"serve", "--no-such-flag"}, "Run 'pancap serve --help' for usage."},
		{[]string{"caption"}, "Run 'pancap caption --help' for usage."},
		{[]string{"serve", "extra"}, "Run 'pancap serve --help' for usage."},
		{[]string{"no-such-command"}, "Run 'pancap --help' for usage."},
		{[]string{"caption", "--addr", "127.0.0.1:1", filepath.Join(t.TempDir(), "missing.png")}, ""},
	} {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs(tt.args)
		cmd, err := root.ExecuteContextC(t.Context())
		if err == nil {
			t.Fatalf("%v: no error", tt.args)
		}
		text := errorText(cmd, err)
		if tt.hint == "" && strings.Contains(text, "--help") || tt.hint != "" && !strings.HasSuffix(text, tt.hint+"\n") {
			t.Errorf("%v: %q, want hint %q", tt.args, text, tt.hint)
		}
	}
}
