//go:build cuda

package cuda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/sample"
	"github.com/pancap-serve/pancap/tools/cuda/emu/cuemu"
)

// The tests of this file need the emulated driver (tools/cuda/emu/driver,
// run by tools/cuda/check.sh): they inject faults and read its counters.

// emuOnly skips t on a real driver and clears injected faults afterwards.
func emuOnly(t *testing.T) {
	t.Helper()
	if !cuemu.Available() {
		t.Skip("needs the emulated CUDA driver (tools/cuda/emu/driver)")
	}
	t.Cleanup(func() {
		if err := cuemu.SetFail("", true); err != nil {
			t.Error(err)
		}
	})
}

func setFail(t *testing.T, spec string) {
	t.Helper()
	if err := cuemu.SetFail(spec, false); err != nil {
		t.Fatal(err)
	}
}

// catch runs f and returns the error it panicked with (nil if none).
func catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			var ok bool
			if err, ok = r.(error); !ok {
				err = fmt.Errorf("panic: %v", r)
			}
		}
	}()
	f()
	return nil
}

// wantErr fails unless err wraps every one of is and none of isNot.
func wantErr(t *testing.T, what string, err error, is []error, isNot ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, e := range is {
		if !errors.Is(err, e) {
			t.Errorf("%s: %v does not wrap %v", what, err, e)
		}
	}
	for _, e := range isNot {
		if errors.Is(err, e) {
			t.Errorf("%s: %v wraps %v", what, err, e)
		}
	}
}

// checkWorks fails unless b still computes a + a correctly.
func checkWorks(t *testing.T, b *Backend) {
	t.Helper()
	if err := b.Lost(); err != nil {
		t.Fatalf("backend lost: %v", err)
	}
	x := upload(b, []float32{1, 2, 3})
	b.Add(x, x, x, 3)
	if got := download(b, x, 3); !slices.Equal(got, []float32{2, 4, 6}) {
		t.Fatalf("a + a = %v", got)
	}
}

// TestEmuAllocFailure: an out-of-memory is an error from LoadWeight and
// AllocCache and a panic from Alloc, wrapping ErrCUDA and cu.OutOfMemory;
// the backend keeps working.
func TestEmuAllocFailure(t *testing.T) {
	emuOnly(t)
	b := newBackend(t, GEMMReference)
	oom := []error{ErrCUDA, cu.OutOfMemory}
	setFail(t, "alloc:1")
	_, err := b.LoadWeight(kernels.F32, []int{4}, make([]byte, 16))
	wantErr(t, "LoadWeight", err, oom, kernels.ErrDeviceLost)
	setFail(t, "alloc:1")
	_, err = b.AllocCache(64, kernels.F32)
	wantErr(t, "AllocCache", err, oom, kernels.ErrDeviceLost)
	setFail(t, "alloc:1")
	wantErr(t, "Alloc", catch(func() { b.Alloc(64) }), oom, kernels.ErrDeviceLost)
	checkWorks(t, b)
}

// TestEmuLaunchFailure: a launch the driver refuses panics with ErrCUDA
// (not a lost device); the next launch works.
func TestEmuLaunchFailure(t *testing.T) {
	emuOnly(t)
	b := newBackend(t, GEMMReference)
	x := upload(b, []float32{1, 2, 3})
	setFail(t, "launch:1")
	wantErr(t, "Add", catch(func() { b.Add(x, x, x, 3) }), []error{ErrCUDA, cu.LaunchOutOfResources}, kernels.ErrDeviceLost)
	checkWorks(t, b)
}

// TestEmuStickyError: a kernel that faults (an illegal address) surfaces
// at the next wait as an error wrapping kernels.ErrDeviceLost; from then on
// Lost reports it and every call fails with it at once, but Free does
// nothing (a model closes its buffers), and Close returns.
func TestEmuStickyError(t *testing.T) {
	emuOnly(t)
	for _, g := range []GEMM{GEMMReference, GEMMCuBLAS} {
		b := newBackend(t, g)
		w, err := b.LoadWeight(kernels.BF16, []int{2, 3}, make([]byte, 12))
		if err != nil {
			t.Fatal(err)
		}
		x, out := upload(b, []float32{1, 2, 3}), b.Alloc(2)
		setFail(t, "sticky:1")
		b.MatMul(out, x, w, nil, 1) // queued: the fault shows when the host waits
		lost := []error{kernels.ErrDeviceLost, ErrCUDA, cu.IllegalAddress}
		wantErr(t, "Read after the fault", catch(func() { download(b, out, 2) }), lost)
		wantErr(t, "Lost", b.Lost(), lost)
		wantErr(t, "Alloc when lost", catch(func() { b.Alloc(1) }), lost)
		_, err = b.AllocCache(8, kernels.F32)
		wantErr(t, "AllocCache when lost", err, lost)
		if err := catch(func() { b.Free(x) }); err != nil {
			t.Errorf("Free when lost: %v", err)
		}
		done := make(chan struct{})
		go func() { b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close hangs on a lost device")
		}
		if err := cuemu.SetFail("", true); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEmuModelTooBig: a model that does not fit the device's memory fails
// to load with an error naming the allocation, and the device memory is
// given back.
func TestEmuModelTooBig(t *testing.T) {
	emuOnly(t)
	for _, mem := range []int64{64 << 10, 300 << 10} {
		used, err := cuemu.SetMemory(mem)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(Options{GEMM: GEMMReference})
		if err != nil {
			t.Fatal(err)
		}
		err = catch(func() {
			m, _, err := model.Open(context.Background(), filepath.Join(repoRoot(), "testdata/checkpoints/tiny/llava"), model.Options{KVBlocks: 96, KVBlockSize: 8, Backend: b})
			if err == nil {
				m.Close()
				t.Fatalf("the tiny model loaded into %d bytes", mem)
			}
			wantErr(t, fmt.Sprintf("load into %d bytes", mem), err, []error{ErrCUDA, cu.OutOfMemory})
		})
		if err != nil {
			t.Errorf("load into %d bytes panicked: %v", mem, err)
			b.Close()
		}
		if now, _ := cuemu.SetMemory(4 << 30); now != used {
			t.Errorf("%d bytes of device memory left allocated after the failed load (%d before)", now, used)
		}
	}
}

// tinyLayers is the LLM depth of testdata/checkpoints/tiny*.
const tinyLayers = 2

// tinyModel opens a tiny golden checkpoint (tiny, tiny-bf16, …) on a fresh
// backend.
func tinyModel(t *testing.T, checkpoint string, g GEMM) (*llava.Model, *Backend) {
	t.Helper()
	be := newBackend(t, g)
	m, _, err := model.Open(context.Background(), filepath.Join(repoRoot(), "testdata/checkpoints", checkpoint, "llava"),
		model.Options{KVBlocks: 96, KVBlockSize: 8, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, be
}

// decodeCounts are the driver calls of one greedy decode step (one token
// per sequence, its next token picked on the device) of the tiny models (2 layers),
// exactly, at any batch size. Per layer, counting kernel launches and
// cuBLAS GEMM calls alike (a cuBLAS GEMM is at least one launch on a GPU):
//
//	(Add)RMSNorm, QKV GEMM, RoPEStore, attention, O GEMM,
//	AddRMSNorm, gate|up GEMM, SiLUMul, down GEMM          = 9
//	+ to_half of the attention output with 16-bit weights  = 10
//
// (the norms and SiLUMul write the 16-bit input of the GEMM after them
// themselves). Every row here sees fewer keys than one attention partition
// holds, so no attn_combine runs; a step with a longer row adds one a
// layer (longStep). Per step: the embedding, the final AddRMSNorm, the LM
// head GEMM (no gather: every row of a decode step has logits) and the
// pick. One packed upload before the embedding (StageStep): token ids,
// positions, slots, the attention plan (with attn_combine's row list, when
// there is one) and the draws of sampling sequences; every later call
// finds its arrays staged. One download: the token ids, 4 bytes a sequence
// (engine.Chunk.Greedy or Sample, picked by the pick kernel). Before issue
// #22's launch work: 18 per layer (25 with 16-bit weights), 22 uploads.
var decodeCounts = []struct {
	checkpoint string
	gemm       GEMM
	want       cuemu.Counters
}{
	{"tiny", GEMMReference, cuemu.Counters{Launches: 1 + 2*9 + 3, HtoD: 1, DtoH: 1, Syncs: 1}},
	{"tiny", GEMMCuBLAS, cuemu.Counters{Launches: 1 + 2*5 + 2, GEMMs: 2*4 + 1, HtoD: 1, DtoH: 1, Syncs: 1}},
	{"tiny-bf16", GEMMCuBLAS, cuemu.Counters{Launches: 1 + 2*6 + 2, GEMMs: 2*4 + 1, HtoD: 1, DtoH: 1, Syncs: 1}},
}

// TestEmuDecodeCounts measures the launches, GEMMs, copies, waits and
// allocations of a decode step of the tiny models at batch 1 and 8 and
// holds them to decodeCounts exactly (a step's cost in calls does not grow
// with the batch): a change that saves calls lowers the numbers, one that
// adds calls must say why.
func TestEmuDecodeCounts(t *testing.T) {
	emuOnly(t)
	for _, c := range decodeCounts {
		m, be := tinyModel(t, c.checkpoint, c.gemm)
		x := upload(be, []float32{1, 2, 3})
		if n := testing.AllocsPerRun(10, func() { be.Add(x, x, x, 3) }); n != 0 {
			t.Errorf("a kernel launch allocates %.0f times", n)
		}
		for _, batch := range []int{1, 8} {
			prompt := []int32{1, 5, 9, 13, 17}
			chunks := make([]engine.Chunk, batch)
			for i := range chunks {
				chunks[i] = engine.Chunk{Blocks: []int32{int32(2 * i), int32(2*i + 1)}, Tokens: prompt, Logits: true, Greedy: true}
			}
			if _, err := m.Forward(chunks); err != nil {
				t.Fatal(err)
			}
			for step := range 3 {
				for i := range chunks {
					chunks[i].Pos, chunks[i].Tokens = len(prompt)+step, []int32{int32(20 + i)}
				}
				d, got := stepCounts(t, m, chunks)
				if step == 0 {
					t.Logf("%s, %s, batch %d, %d layers: %v per decode step",
						c.checkpoint, be.Name(), batch, tinyLayers, d)
				}
				if got != c.want || d.DtoHBytes != int64(4*batch) {
					t.Errorf("%s, %s, batch %d, step %d: %v; want %v and %d bytes down", c.checkpoint, be.Name(), batch, step, d, c.want, 4*batch)
				}
			}
			// Sampling sequences: the same calls (their draws go up with
			// the step's other arrays); token ids alone come back.
			for step := 3; step < 5; step++ {
				for i := range chunks {
					chunks[i].Pos, chunks[i].Tokens = len(prompt)+step, []int32{int32(20 + i)}
					chunks[i].Greedy, chunks[i].Sample = false, &engine.Sampling{Temperature: 0.8, TopK: 40, TopP: 0.9, U: float64(i) / 8}
				}
				if d, got := stepCounts(t, m, chunks); got != c.want || d.DtoHBytes != int64(4*batch) {
					t.Errorf("%s, %s, batch %d, sampling step %d: %v; want %v and %d bytes down", c.checkpoint, be.Name(), batch, step, d, c.want, 4*batch)
				}
			}
		}
		// A row past attnMaxPart keys (the partition size cap, reached on
		// the emulated driver's one multiprocessor) spans two partitions:
		// attn_combine runs in every layer, its row list uploaded with the
		// rest of the plan. The first such step grows the partials' scratch;
		// the second is counted.
		long := engine.Chunk{Blocks: make([]int32, 40), Tokens: []int32{7}, Logits: true, Greedy: true}
		for i := range long.Blocks {
			long.Blocks[i] = int32(i)
		}
		want := c.want
		want.Launches += tinyLayers
		for step := range 2 {
			long.Pos = attnMaxPart + 40 + step
			d, got := stepCounts(t, m, []engine.Chunk{long})
			if step == 1 && got != want {
				t.Errorf("%s, %s, a row at position %d: %v; want %v", c.checkpoint, be.Name(), long.Pos, d, want)
			}
		}
	}
}

// stepCounts runs one Forward of chunks and returns the driver calls it
// made, and the same without the byte totals, copies between buffers and
// memsets (what decodeCounts holds).
func stepCounts(t *testing.T, m *llava.Model, chunks []engine.Chunk) (d, calls cuemu.Counters) {
	t.Helper()
	before, _ := cuemu.Stats()
	if _, err := m.Forward(chunks); err != nil {
		t.Fatal(err)
	}
	after, _ := cuemu.Stats()
	d = after.Sub(before)
	return d, cuemu.Counters{Launches: d.Launches, GEMMs: d.GEMMs, HtoD: d.HtoD, DtoH: d.DtoH, Syncs: d.Syncs, Allocs: d.Allocs, Frees: d.Frees}
}

// TestEmuPicks: in a batch that mixes a Greedy, a Sample and a logits
// chunk, the greedy chunk's id (picked on the device) is sample.Argmax of
// its logits, the sampled one's is sample.Picker's pick of its logits
// (hostAgrees), and the logits chunk's row is that of the batch without
// picks.
func TestEmuPicks(t *testing.T) {
	emuOnly(t)
	m, _ := tinyModel(t, "tiny", GEMMReference)
	batch := []engine.Chunk{
		{Blocks: []int32{0, 1}, Tokens: []int32{1, 5, 9, 13, 17}, Logits: true},
		{Blocks: []int32{2, 3}, Tokens: []int32{1, 7, 8}, Logits: true},
		{Blocks: []int32{4, 5}, Tokens: []int32{1, 2, 3, 4}, Logits: true},
	}
	out, err := m.Forward(batch)
	if err != nil {
		t.Fatal(err)
	}
	rows := [][]float32{slices.Clone(out.Logits[0]), slices.Clone(out.Logits[1]), slices.Clone(out.Logits[2])}
	var host sample.Picker
	for _, s := range []engine.Sampling{{Temperature: 1, U: 0.3}, {Temperature: 0.7, TopK: 20, TopP: 0.9, U: 0.8}, {Temperature: 2, TopP: 0.5, U: 0.05}} {
		batch[0].Greedy, batch[1].Sample = true, &s // the same step again: it writes the same keys and values
		if out, err = m.Forward(batch); err != nil {
			t.Fatal(err)
		}
		if len(out.Tokens) != 2 || out.Tokens[0] != sample.Argmax(rows[0]) {
			t.Fatalf("%+v: picks %v, want 2 with the greedy %d first", s, out.Tokens, sample.Argmax(rows[0]))
		}
		d := kernels.Draw{Temperature: s.Temperature, TopK: int32(s.TopK), TopP: s.TopP, U: s.U}
		if _, ok := hostAgrees(&host, rows[1], d, out.Tokens[1]); !ok {
			t.Errorf("%+v: sampled %d, want sample.Picker's %d", s, out.Tokens[1], host.Pick(rows[1], sample.Params{Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP}, s.U))
		}
		if len(out.Logits) != 1 || !slices.Equal(out.Logits[0], rows[2]) {
			t.Errorf("%+v: %d logit rows, want the logits chunk's alone", s, len(out.Logits))
		}
	}
}

// TestEmuChainGolden serves each reference chain (testdata/golden/chain-*.json,
// the authors' four-stage run in transformers) through the batcher on the
// CUDA backend, reference GEMM: every stage's tokens equal the reference's
// and the CPU backend's.
func TestEmuChainGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "testdata/golden/chain-*.json"))
	ran := 0
	for _, f := range files {
		var g struct {
			Checkpoint   string `json:"checkpoint"`
			Image        string `json:"image"`
			MaxNewTokens int    `json:"max_new_tokens"`
			Caption      string `json:"caption"`
			Stages       []struct {
				GeneratedIDs []int32 `json:"generated_ids"`
			} `json:"stages"`
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if g.Checkpoint == "" || filepath.Base(g.Checkpoint) == "clip336" && testing.Short() {
			continue
		}
		img, err := os.ReadFile(filepath.Join(repoRoot(), g.Image))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := filepath.Join(repoRoot(), g.Checkpoint, "llava")
			cpuOut, _ := runChain(t, dir, cpu.New(1), img, g.MaxNewTokens)
			gpuOut, eos := runChain(t, dir, newBackend(t, GEMMReference), img, g.MaxNewTokens)
			for i, s := range g.Stages {
				want := slices.DeleteFunc(slices.Clone(s.GeneratedIDs), func(id int32) bool { return id == eos })
				if !slices.Equal(gpuOut.Stages[i].TokenIDs, want) {
					t.Errorf("stage %d on CUDA:\n got %v\nwant %v (reference)", i+1, gpuOut.Stages[i].TokenIDs, want)
				}
				if !slices.Equal(gpuOut.Stages[i].TokenIDs, cpuOut.Stages[i].TokenIDs) {
					t.Errorf("stage %d: CUDA %v, CPU %v", i+1, gpuOut.Stages[i].TokenIDs, cpuOut.Stages[i].TokenIDs)
				}
			}
			if gpuOut.Caption != g.Caption {
				t.Errorf("caption on CUDA %q, want %q", gpuOut.Caption, g.Caption)
			}
			ran++
		})
	}
	if ran == 0 {
		t.Fatal("no chain golden ran")
	}
}

// runChain runs one four-stage chain of img through a batcher over the
// model in dir on backend be, and returns the result and the model's EOS.
func runChain(t *testing.T, dir string, be kernels.Backend, img []byte, maxNew int) (*batcher.Result, int32) {
	t.Helper()
	m, _, err := model.Open(context.Background(), dir, model.Options{KVBlocks: 512, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bt := batcher.New(m, batcher.Config{ChainReuse: true})
	bt.Start()
	defer bt.Shutdown(context.Background())
	ch, err := bt.SubmitChain(context.Background(), batcher.ChainRequest{Image: img, MaxNewTokens: [4]int{maxNew, maxNew, maxNew, maxNew}})
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case ev := <-ch:
			if ev.Kind != batcher.EventDone {
				continue
			}
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			return ev.Result, m.Spec().EOS
		case <-timeout:
			t.Fatal("the chain did not finish")
		}
	}
}

// TestEmuEncodeOffDecodeStream: EncodeImages queues the vision tower on the
// side stream without one host wait or device-to-host copy (its features
// stay on the device, not ready until the queue runs), and a prefill that
// reads them copies no image rows from the host: its only read-back is the
// logits row.
func TestEmuEncodeOffDecodeStream(t *testing.T) {
	emuOnly(t)
	for _, g := range []GEMM{GEMMReference, GEMMCuBLAS} {
		m, _ := tinyModel(t, "tiny", g)
		spec := m.Spec()
		img := engine.Image{Pixels: make([]float32, 3*spec.ImageSize*spec.ImageSize)}
		for i := range img.Pixels {
			img.Pixels[i] = float32(i%23)/11 - 1
		}
		prompt := llava.ExpandImageTokens([]int32{1, 5, engine.ImageToken, 9}, spec.ImageTokens)
		prefill := func(f engine.Features) {
			t.Helper()
			if _, err := m.Forward([]engine.Chunk{{Blocks: []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, Tokens: prompt,
				Image: f, Logits: true}}); err != nil {
				t.Fatal(err)
			}
		}
		warm, err := m.EncodeImages([]engine.Image{img}) // grows the buffers
		if err != nil {
			t.Fatal(err)
		}
		prefill(warm[0]) // grows the step's buffers and uploads its tables
		warm[0].Release()
		before, _ := cuemu.Stats()
		feats, err := m.EncodeImages([]engine.Image{img})
		if err != nil {
			t.Fatal(err)
		}
		after, _ := cuemu.Stats()
		d := after.Sub(before)
		t.Logf("GEMM %d: EncodeImages: %v", g, d)
		if d.Syncs != 0 || d.DtoH != 0 || d.Allocs != 0 || d.Frees != 0 {
			t.Errorf("EncodeImages waited or read back: %v", d)
		}
		if feats[0].Ready() {
			t.Error("features ready before anything ran the queue")
		}
		before = after
		prefill(feats[0])
		after, _ = cuemu.Stats()
		d = after.Sub(before)
		if rows := int64(4 * spec.ImageTokens * spec.Hidden); d.HtoDBytes >= rows || d.DtoHBytes != int64(4*spec.VocabSize) {
			t.Errorf("prefill with image rows: %v; want under %d bytes up (the rows stay on the device) and one logits row down", d, rows)
		}
		if !feats[0].Ready() {
			t.Error("features not ready after a step that read them")
		}
		feats[0].Release()
	}
}
