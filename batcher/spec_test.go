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
	// A list 10 11 | 20 21 | 30 31, separated by 5 6, copied item by item.
	ctx := []int32{1, 10, 11, 5, 6, 20, 21, 5, 6, 30, 31, 9, 10, 11, 5, 6}
	d := newDrafter(8)
	if got := d.draft(ctx, 3); !slices.Equal(got, []int32{20, 21, 5}) {
		t.Fatalf("draft %v, want the continuation of the latest 10 11 5 6: 20 21 5", got)
	}
	d.update(3, 3)
	ctx = append(ctx, 20, 21, 5, 6) // accepted 20 21 5, then the model said 6
	if d.k != 6 {
		t.Errorf("k = %d after a full acceptance of 3 from 4, want 6", d.k)
	}
	// ", 5 6" occurs three times; the copy point picks the one after 20 21.
	if got := d.draft(ctx, 8); !slices.Equal(got, []int32{30, 31, 9, 10, 11, 5}) {
		t.Fatalf("draft %v, want the item after the copied one", got)
	}
	d.update(6, 2)
	if d.k != 3 {
		t.Errorf("k = %d after accepting 2 of 6, want 3", d.k)
	}
	if got := d.draft(ctx, 1); len(got) != 1 {
		t.Errorf("limit 1 gave %v", got)
	}
	if got := d.draft([]int32{1, 2, 3}, 4); got != nil {
		t.Errorf("draft %v from a context with no repeat", got)
	}
}

func TestDrafterPausesAfterMisses(t *testing.T) {
	ctx := []int32{1, 2, 3, 1, 2}
	d := newDrafter(8)
	for miss, pause := range []int{1, 2, 4, 8, 16, 16} {
		if got := d.draft(ctx, 8); len(got) == 0 {
			t.Fatalf("miss %d: no draft", miss)
		}
		d.update(1, 0)
		for i := range pause {
			if got := d.draft(ctx, 8); got != nil {
				t.Fatalf("miss %d: drafted %v during step %d of a pause of %d", miss, got, i, pause)
			}
		}
	}
	d.draft(ctx, 8)
	d.update(1, 1)
	if d.miss != 0 || d.k != 3 {
		t.Errorf("after an acceptance: miss %d k %d, want 0 and 3", d.miss, d.k)
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
// scripted fake engine and returns each request's stream content. Below
// 1000 blocks the generations skip admission control, so sequences get
// preempted.
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
		req, err := b.newGenerateRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		if blocks < 1000 {
			req.need = 0 // defeat admission control: preempt
		}
		ch, err := b.enqueue(context.Background(), req)
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
