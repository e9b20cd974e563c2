package batcher

import (
	"context"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/sample"
)

// rowsEngine is the fake engine picking its Sample chunks itself from the
// rows the fake returns for them, which it records with their draws.
type rowsEngine struct {
	*fakeEngine
	picker sample.Picker
	rows   [][]float32
	draws  []engine.Sampling
}

func (e *rowsEngine) Forward(batch []engine.Chunk) (engine.Output, error) {
	plain := slices.Clone(batch)
	for i := range plain {
		plain[i].Sample = nil
	}
	out, err := e.fakeEngine.Forward(plain)
	if err != nil {
		return out, err
	}
	var res engine.Output
	logits, ids := out.Logits, out.Tokens
	for _, c := range batch {
		for range c.LogitRows() {
			switch {
			case c.Greedy:
				res.Tokens, ids = append(res.Tokens, ids[0]), ids[1:]
			case c.Sample != nil:
				d := *c.Sample
				e.rows, e.draws = append(e.rows, slices.Clone(logits[0])), append(e.draws, d)
				res.Tokens = append(res.Tokens, e.picker.Pick(logits[0], sample.Params{Temperature: d.Temperature, TopK: d.TopK, TopP: d.TopP}, d.U))
				logits = logits[1:]
			default:
				res.Logits, logits = append(res.Logits, logits[0]), logits[1:]
			}
		}
	}
	return res, nil
}

// TestSampledTokensFollowTheSeed: a sampling sequence hands the engine one
// Sample chunk a token, with its parameters and the next number of its
// seeded stream, so its tokens are those a sample.Sampler of the same seed
// draws from the same rows one by one (as when the batcher sampled the rows
// itself), while a greedy sequence in the same steps stays Greedy.
func TestSampledTokensFollowTheSeed(t *testing.T) {
	eng := &rowsEngine{fakeEngine: newFakeEngine(1024)}
	b := New(eng, Config{})
	t.Cleanup(func() {
		if err := b.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	b.Start()
	params := sample.Params{Temperature: 1.3, TopK: 8, TopP: 0.95, Seed: 11}
	r := genReq("Sample a story.", "")
	r.Sampling = params
	greedy := genReq("Tell a story.", "")
	gch, err := b.SubmitGenerate(context.Background(), greedy)
	if err != nil {
		t.Fatal(err)
	}
	o := runGen(t, b, r)
	if g := collect(t, gch); g.err != nil {
		t.Fatal(g.err)
	}
	got := o.result.Stages[0].TokenIDs
	replay, err := sample.New(params)
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	argmaxes := 0
	for _, row := range eng.rows {
		want = append(want, replay.Next(row))
		if want[len(want)-1] == sample.Argmax(row) {
			argmaxes++
		}
	}
	if len(eng.draws) != r.MaxNewTokens || !slices.Equal(got, want) {
		t.Fatalf("%d Sample chunks for %d tokens; tokens %v, want the seeded sampler's %v", len(eng.draws), r.MaxNewTokens, got, want)
	}
	if argmaxes == len(want) {
		t.Error("every sampled token is the argmax: the test samples nothing")
	}
	for _, d := range eng.draws {
		if d.Temperature != params.Temperature || d.TopK != params.TopK || d.TopP != params.TopP {
			t.Fatalf("draw %+v, want the request's %+v", d, params)
		}
	}
}
