package batcher

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pancap-serve/pancap/sample"
)

func TestDrafterCopiesInOrder(t *testing.T) {
	// A list 10 11 | 20 21 | 30 31 with the separator 5 6 7 8, then the
	// text generated so far: 9 10.
	ctx := []int32{10, 11, 5, 6, 7, 8, 20, 21, 5, 6, 7, 8, 30, 31, 9, 10}
	d := newDrafter(8)
	if got := d.draft(ctx, 5); !slices.Equal(got, []int32{11, 5, 6, 7, 8}) {
		t.Fatalf("draft %v, want the continuation of the first 10: 11 5 6 7 8", got)
	}
	d.update(5, 5)
	if d.k != 8 {
		t.Errorf("k = %d after a full acceptance from 4, want 8", d.k)
	}
	// Accepted; the model then said 42 (a word the list lacks) and the
	// separator. Its latest earlier occurrence is the generated one, but
	// the copy point picks the one after the copied item.
	ctx = append(ctx, 11, 5, 6, 7, 8, 42, 5, 6, 7, 8)
	if got := d.draft(ctx, 2); !slices.Equal(got, []int32{20, 21}) {
		t.Fatalf("draft %v, want the item after the copied one: 20 21", got)
	}
	late := newDrafter(8)
	late.src = len(ctx)
	if got := late.draft(ctx, 2); !slices.Equal(got, []int32{42, 5}) {
		t.Errorf("with the copy point at the end: draft %v, want the latest continuation 42 5", got)
	}
	d.update(2, 1)
	if d.k != 2 {
		t.Errorf("k = %d after accepting 1 of 2, want 2", d.k)
	}
	d.update(1, 0)
	if d.k != 1 {
		t.Errorf("k = %d after accepting 0, want 1", d.k)
	}
	if got := d.draft([]int32{1, 2, 3}, 4); got != nil {
		t.Errorf("draft %v from a context with no repeat", got)
	}
	if got := d.draft([]int32{1, 2, -200, 3, 1, 2}, 4); got != nil {
		t.Errorf("draft %v of an image position", got)
	}
}

func TestOutputsDraft(t *testing.T) {
	var o outputs
	o.add([]int32{1, 2, 3, 4, 5})
	o.add([]int32{7, 2, 3, 9, 9})
	if got := o.draft([]int32{8, 2, 3}, 2); !slices.Equal(got, []int32{9, 9}) {
		t.Errorf("draft %v, want the newest output's continuation of 2 3: 9 9", got)
	}
	if got := o.draft([]int32{6, 3, 4}, 5); !slices.Equal(got, []int32{5}) {
		t.Errorf("draft %v, want 5 (the output ends)", got)
	}
	if got := o.draft([]int32{6, 4}, 5); got != nil {
		t.Errorf("draft %v from a suffix that ends an output", got)
	}
	if got := o.draft([]int32{8, 1}, 5); got != nil {
		t.Errorf("draft %v from a one-token match", got)
	}
	for i := range specPastOutputs {
		o.add([]int32{int32(100 + i), 2, 3, int32(200 + i)})
	}
	if len(o.ids) != specPastOutputs {
		t.Fatalf("%d outputs kept, want %d", len(o.ids), specPastOutputs)
	}
	if got := o.draft([]int32{2, 3}, 1); !slices.Equal(got, []int32{200 + specPastOutputs - 1}) {
		t.Errorf("draft %v, want the newest output's %d", got, 200+specPastOutputs-1)
	}
	if got := o.draft([]int32{3, 4}, 1); got != nil {
		t.Errorf("draft %v from an output that was replaced", got)
	}
	long := make([]int32, 2*specPastTokens)
	o.add(long)
	if n := len(o.ids[(o.next+specPastOutputs-1)%specPastOutputs]); n != specPastTokens {
		t.Errorf("kept %d tokens of a long output, want %d", n, specPastTokens)
	}
}

func TestSpecStatsWorth(t *testing.T) {
	st := newSpecStats(8)
	if got := st.worth(8, 0.3); got != 1 {
		t.Errorf("no statistics: worth %d, want 1 (0.5 > 0.3, 0.25 < it)", got)
	}
	for range 100 { // drafts of 2, always accepted
		st.record(2, 2)
	}
	if got := st.worth(8, 0.3); got != 8 {
		t.Errorf("worth %d after full acceptances of 2, want 8: later positions inherit the rate", got)
	}
	for range 100 { // drafts of 5: two accepted, the third never
		st.record(5, 2)
	}
	if got := st.worth(8, 0.3); got != 2 {
		t.Errorf("worth %d, want 2", got)
	}
	if got := st.worth(1, 0.3); got != 1 {
		t.Errorf("worth(1) = %d", got)
	}
	if got := st.worth(8, 0.999); got != 0 {
		t.Errorf("worth %d at a row cost of 0.999, want 0", got)
	}
	for range 2000 { // nothing accepted
		st.record(1, 0)
	}
	if got := st.worth(8, 0.3); got != 0 {
		t.Errorf("worth %d after rejections, want 0", got)
	}
	if c1, c4 := rowCost(1), rowCost(4); c1 >= c4 || c4 >= 1 || c1 <= 0 {
		t.Errorf("rowCost(1) = %g, rowCost(4) = %g: want 0 < c1 < c4 < 1", c1, c4)
	}
	if st.tried[0] > specStatsCap {
		t.Errorf("tried[0] = %g, over the cap %d", st.tried[0], specStatsCap)
	}
}

// specRequests are mixed chain and generation requests: scripted replies
// that copy their prompts (drafts accepted), hashed ones (drafts
// rejected), stop strings, tight token limits, EOS and sampling.
func specRequests() (chains []ChainRequest, gens []GenerateRequest) {
	for i := range 6 {
		r := chainReq(fmt.Sprint("spec", i%4))
		r.RequestID = fmt.Sprint("chain", i)
		r.IgnoreEOS = i%2 == 0
		chains = append(chains, r)
	}
	for i := range 10 {
		prompt := fmt.Sprintf("Copy %d: the quick brown fox jumps over the lazy dog, then the lazy dog sleeps.", i%3)
		r := GenerateRequest{RequestID: fmt.Sprint("gen", i), Prompt: prompt, MaxNewTokens: 20 + 7*i}
		switch i % 5 {
		case 1:
			r.Stop = []string{"lazy dog s"}
		case 2:
			r.Sampling = sample.Params{Temperature: 0.8, Seed: uint64(i)}
		case 3:
			r.Image = []byte("img:gen")
		case 4:
			r.Prompt = fmt.Sprintf("Hash %d: no script answers this prompt.", i)
		}
		gens = append(gens, r)
	}
	return chains, gens
}

// specScript makes the fake engine copy the "Copy" prompts.
var specScript = map[string]string{
	"Copy 0": "the quick brown fox jumps over the lazy dog, then the lazy dog sleeps. The quick brown fox jumps over the lazy dog",
	"Copy 1": "then the lazy dog sleeps, the quick brown fox jumps over the lazy dog, then the lazy dog sleeps.",
	"Copy 2": "the quick brown fox jumps over the lazy cat, then the lazy dog sleeps.",
}

// streamContent is what a request's stream says, without timings, cache
// counts or queue positions: every event's kind, stage, text, token ids,
// finish reason and entities, and the stage results.
func streamContent(o outcome) string {
	var s string
	for _, ev := range o.events {
		s += fmt.Sprintf("%d/%d/%q/%v/%s/%v|", ev.Kind, ev.Stage, ev.Text, ev.TokenIDs, ev.Finish, ev.Entities)
	}
	return s + fmt.Sprint(o.stages, o.err)
}

// runSpecMix submits all of specRequests at once to a batcher over a
// scripted fake engine and returns each request's stream content. In a
// small pool, admission by the blocks a prompt needs now oversubscribes it,
// so sequences get preempted.
func runSpecMix(t *testing.T, blocks int, cfg Config) (map[string]string, *Batcher) {
	t.Helper()
	b, eng := newTest(t, blocks, cfg)
	eng.script = specScript
	chains, gens := specRequests()
	out := map[string]string{}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	keep := func(id string, ch <-chan Event) {
		wg.Go(func() {
			o := collect(t, ch)
			mu.Lock()
			out[id] = streamContent(o)
			mu.Unlock()
		})
	}
	for _, r := range chains {
		ch, err := b.SubmitChain(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		keep(r.RequestID, ch)
	}
	for _, r := range gens {
		ch, err := b.SubmitGenerate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		keep(r.RequestID, ch)
	}
	wg.Wait()
	if st := b.kv.Stats(); st.Used != 0 {
		t.Errorf("%d KV blocks still used", st.Used)
	}
	return out, b
}

// TestSpeculativeMatchesPlain: with speculation on, a concurrent mix of
// chains and generations (in mixed batches, with rejected and accepted
// drafts, stops, limits, EOS, sampling, and preemption in a small pool)
// streams exactly what it streams with speculation off.
func TestSpeculativeMatchesPlain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		blocks int
		cfg    Config
	}{
		{"reuse", 2048, Config{ChainReuse: true, MaxBatchTokens: 64, SpeculativeMaxBatch: 8}},
		{"baseline", 2048, Config{MaxBatchTokens: 40, SpeculativeMaxBatch: 16}},
		{"small pool", 120, Config{ChainReuse: true, MaxBatchTokens: 48, SpeculativeMaxBatch: 16, SpeculativeTokens: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := runSpecMix(t, tc.blocks, tc.cfg)
			cfg := tc.cfg
			cfg.Speculative = true
			got, b := runSpecMix(t, tc.blocks, cfg)
			for id, w := range want {
				if got[id] != w {
					t.Errorf("%s with speculation:\n got %s\nwant %s", id, got[id], w)
				}
			}
			drafted := testutil.ToFloat64(b.m.specDraftTokens.WithLabelValues("generate"))
			accepted := testutil.ToFloat64(b.m.specAccepted.WithLabelValues("generate"))
			steps := testutil.ToFloat64(b.m.specDrafts.WithLabelValues("generate"))
			t.Logf("generate: %.0f verifications, %.0f draft tokens, %.0f accepted", steps, drafted, accepted)
			if accepted == 0 || accepted == drafted || steps == 0 {
				t.Errorf("generate: %.0f of %.0f draft tokens accepted, want some but not all", accepted, drafted)
			}
			if tc.blocks < 1000 && testutil.ToFloat64(b.m.preemptions) == 0 {
				t.Error("no preemption in the small pool")
			}
			chainDrafts := 0.0
			for _, st := range []string{"localize", "tag", "discover", "caption"} {
				chainDrafts += testutil.ToFloat64(b.m.specDraftTokens.WithLabelValues(st))
			}
			if chainDrafts == 0 {
				t.Error("the chains drafted nothing")
			}
		})
	}
}

// TestSpeculativeBacksOff: a step with more decoding sequences than
// SpeculativeMaxBatch drafts nothing.
func TestSpeculativeBacksOff(t *testing.T) {
	_, b := runSpecMix(t, 2048, Config{ChainReuse: true, Speculative: true, SpeculativeMaxBatch: 1, MaxBatchTokens: 512})
	// 16 requests arrive together; drafts happen only once at most one
	// sequence is decoding (the tail).
	all := 0.0
	for _, st := range []string{"generate", "localize", "tag", "discover", "caption"} {
		all += testutil.ToFloat64(b.m.specDrafts.WithLabelValues(st))
	}
	_, plain := runSpecMix(t, 2048, Config{ChainReuse: true, Speculative: true, SpeculativeMaxBatch: 64, MaxBatchTokens: 512})
	wide := 0.0
	for _, st := range []string{"generate", "localize", "tag", "discover", "caption"} {
		wide += testutil.ToFloat64(plain.m.specDrafts.WithLabelValues(st))
	}
	if all >= wide {
		t.Errorf("%.0f verifications with SpeculativeMaxBatch 1, %.0f with 64: no back-off", all, wide)
	}
}
