package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/app"
	"github.com/pancap-serve/pancap/model/imageproc"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/sample"
	"github.com/pancap-serve/pancap/tokenizer"
)

// generateFlags are the options of `pancap generate`.
type generateFlags struct {
	app.ModelFlags
	image, prompt        string
	dumpLogits           string
	maxNew               int
	raw, json, ignoreEOS bool
	sampling             sample.Params
}

// generateResult is what `pancap generate --json` prints.
type generateResult struct {
	Model         string          `json:"model"`
	RandomWeights bool            `json:"random_weights"`
	DType         string          `json:"dtype"`
	Device        string          `json:"device"`
	Prompt        string          `json:"prompt"`
	InputIDs      []int32         `json:"input_ids"` // -200 marks the image
	GeneratedIDs  []int32         `json:"generated_ids"`
	Text          string          `json:"text"`
	Finish        string          `json:"finish"` // "eos" or "length"
	Unused        []string        `json:"unused_tensors,omitempty"`
	Timings       generateTimings `json:"timings"`
}

// generateTimings are wall-clock durations in milliseconds.
type generateTimings struct {
	LoadMS          float64 `json:"load_ms"`
	PreprocessMS    float64 `json:"preprocess_ms"`
	VisionMS        float64 `json:"vision_ms"`
	PrefillMS       float64 `json:"prefill_ms"`
	PrefillTokens   int     `json:"prefill_tokens"`
	DecodeMS        float64 `json:"decode_ms"`
	DecodeTokens    int     `json:"decode_tokens"`
	DecodeTokensPS  float64 `json:"decode_tokens_per_s"`
	PrefillTokensPS float64 `json:"prefill_tokens_per_s"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func newGenerateCmd() *cobra.Command {
	var f generateFlags
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Run one prompt (and image) through the model in-process",
		Long: "generate loads a model, runs one prompt through it without a server and prints the\n" +
			"input ids, the generated ids and text, and timings. Without --raw the prompt is\n" +
			"wrapped in LLaVA's vicuna_v1 template with <image> first. Without --model it runs the\n" +
			"embedded default model (trained on synthetic scenes: see `pancap serve --help`).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGenerate(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	f.ModelFlags.Register(fl)
	fl.StringVar(&f.image, "image", "", "image file (JPEG, PNG, WebP, GIF)")
	fl.StringVar(&f.prompt, "prompt", "", "user prompt (the whole prompt with --raw)")
	fl.IntVar(&f.maxNew, "max-new-tokens", 64, "tokens to generate at most")
	fl.BoolVar(&f.raw, "raw", false, "use --prompt as is (it may contain <image>) instead of the vicuna_v1 template")
	fl.BoolVar(&f.json, "json", false, "print one JSON object")
	fl.BoolVar(&f.ignoreEOS, "ignore-eos", false, "do not stop at EOS")
	fl.StringVar(&f.dumpLogits, "dump-logits", "", "write the last prompt position's logits to this file as little-endian float32")
	fl.Float32Var(&f.sampling.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	fl.Float32Var(&f.sampling.TopP, "top-p", 0, "nucleus sampling mass (0 or 1: off)")
	fl.IntVar(&f.sampling.TopK, "top-k", 0, "top-k sampling (0: off)")
	fl.Uint64Var(&f.sampling.Seed, "seed", 0, "sampling seed")
	return cmd
}

// errGenerateArgs reports inconsistent generate flags.
var errGenerateArgs = errors.New("generate: bad arguments")

// fullPrompt applies the vicuna_v1 template unless raw; a text-only prompt
// drops the image placeholder.
func fullPrompt(user string, raw, hasImage bool) string {
	if raw {
		return user
	}
	p := chain.Template(user)
	if !hasImage {
		p = strings.Replace(p, chain.ImagePlaceholder+"\n", "", 1)
	}
	return p
}

func runGenerate(ctx context.Context, w io.Writer, f generateFlags) error {
	if f.maxNew < 0 {
		return fmt.Errorf("%w: --max-new-tokens %d", errGenerateArgs, f.maxNew)
	}
	sampler, err := sample.New(f.sampling)
	if err != nil {
		return err
	}
	var res generateResult
	t0 := time.Now()
	if err := f.ModelFlags.Check(); err != nil {
		return err
	}
	m, rep, err := app.OpenModel(ctx, f.ModelFlags, imageproc.DefaultLimits())
	if err != nil {
		return err
	}
	defer m.Close()
	res.Timings.LoadMS = ms(time.Since(t0))
	spec := m.Spec()
	res.Model, res.RandomWeights, res.DType, res.Device = spec.Name, spec.RandomWeights, spec.DType, spec.Device
	res.Unused = rep.Unused

	res.Prompt = fullPrompt(f.prompt, f.raw, f.image != "")
	tok := m.Tokenizer().(*tokenizer.Tokenizer)
	res.InputIDs = tokenizer.EncodeImagePrompt(tok, res.Prompt, 1)
	images := 0
	for _, id := range res.InputIDs {
		if id == engine.ImageToken {
			images++
		}
	}
	if images > 1 || (images == 1) != (f.image != "") {
		return fmt.Errorf("%w: the prompt holds %d <image> placeholders and %d images were given", errGenerateArgs, images, min(len(f.image), 1))
	}
	var feats engine.Features
	if f.image != "" {
		data, err := os.ReadFile(f.image)
		if err != nil {
			return err
		}
		t := time.Now()
		img, err := m.Preprocess(ctx, data)
		if err != nil {
			return fmt.Errorf("%s: %w", f.image, err)
		}
		res.Timings.PreprocessMS = ms(time.Since(t))
		t = time.Now()
		out, err := m.EncodeImages([]engine.Image{img})
		if err != nil {
			return err
		}
		feats = out[0]
		defer feats.Release()
		feats.Wait() // the timing covers the encode, not only its queuing
		res.Timings.VisionMS = ms(time.Since(t))
	}

	seq := m.NewSequence()
	prompt := llava.ExpandImageTokens(res.InputIDs, spec.ImageTokens)
	if len(prompt)+f.maxNew > spec.MaxContext {
		return fmt.Errorf("%w: %d prompt positions + %d new tokens exceed the context of %d", errGenerateArgs, len(prompt), f.maxNew, spec.MaxContext)
	}
	t := time.Now()
	logits, err := seq.Feed(prompt, feats, 0)
	if err != nil {
		return err
	}
	res.Timings.PrefillMS, res.Timings.PrefillTokens = ms(time.Since(t)), len(prompt)
	res.Timings.PrefillTokensPS = float64(len(prompt)) / time.Since(t).Seconds()
	if f.dumpLogits != "" {
		if err := writeF32(f.dumpLogits, logits); err != nil {
			return err
		}
	}

	t = time.Now()
	res.Finish = "length"
	res.GeneratedIDs = []int32{}
	for len(res.GeneratedIDs) < f.maxNew {
		next := sampler.Next(logits)
		if next == spec.EOS && !f.ignoreEOS {
			res.Finish = "eos"
			break
		}
		res.GeneratedIDs = append(res.GeneratedIDs, next)
		if len(res.GeneratedIDs) == f.maxNew {
			break
		}
		if logits, err = seq.Feed([]int32{next}, nil, 0); err != nil {
			return err
		}
	}
	dec := time.Since(t)
	res.Timings.DecodeMS, res.Timings.DecodeTokens = ms(dec), len(res.GeneratedIDs)
	if len(res.GeneratedIDs) > 0 {
		res.Timings.DecodeTokensPS = float64(len(res.GeneratedIDs)) / dec.Seconds()
	}
	res.Text = tok.Decode(res.GeneratedIDs)
	return printGenerate(w, &res, f.json)
}

// writeF32 writes v as little-endian float32.
func writeF32(path string, v []float32) error {
	buf := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	return os.WriteFile(path, buf, 0o644)
}

func printGenerate(w io.Writer, r *generateResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	note := ""
	if r.RandomWeights {
		note = "  (RANDOM WEIGHTS: the text is meaningless)"
	}
	tm := r.Timings
	_, err := fmt.Fprintf(w, "model: %s [%s, %s]%s\ninput ids (%d): %v\ngenerated ids (%d, %s): %v\ntext: %q\n"+
		"timings: load %.1f ms, preprocess %.1f ms, vision %.1f ms, prefill %.1f ms (%d tokens, %.1f tok/s), decode %.1f ms (%d tokens, %.1f tok/s)\n",
		r.Model, r.DType, r.Device, note, len(r.InputIDs), r.InputIDs, len(r.GeneratedIDs), r.Finish, r.GeneratedIDs, r.Text,
		tm.LoadMS, tm.PreprocessMS, tm.VisionMS, tm.PrefillMS, tm.PrefillTokens, tm.PrefillTokensPS, tm.DecodeMS, tm.DecodeTokens, tm.DecodeTokensPS)
	return err
}
