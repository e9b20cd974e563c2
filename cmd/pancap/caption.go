package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/gif" // decoders for --annotate
	_ "image/jpeg"
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	_ "golang.org/x/image/webp"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/chain/annotate"
	"github.com/pancap-serve/pancap/client"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// captionFlags are the flags of `pancap caption`.
type captionFlags struct {
	dialFlags
	json         bool
	maxNewTokens []int
	stages       int
	annotate     string
	temperature  float32
	topP         float32
	topK         int
	seed         uint64
	ignoreEOS    bool
}

// newCaptionCmd captions images with a running server.
func newCaptionCmd() *cobra.Command {
	fl := &captionFlags{}
	cmd := &cobra.Command{
		Use:   "caption IMAGE...",
		Short: "Caption images with a running server, streaming each stage",
		Long: "Send each image to the server at --addr and print the panoptic caption chain as it is\n" +
			"generated, stage by stage. With --json print one JSON object per image instead.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCaption(cmd, fl, args)
		},
	}
	f := cmd.Flags()
	fl.dialFlags.register(f)
	f.BoolVar(&fl.json, "json", false, "print one JSON object per image (stage texts, hand-off lists, caption, entities)")
	f.IntSliceVar(&fl.maxNewTokens, "max-new-tokens", nil, "tokens per stage: one value for every stage, or one per stage (default 1024)")
	f.IntVar(&fl.stages, "stages", 4, "run stages 1..N (1-4; 0 means all four, as in the API)")
	f.StringVar(&fl.annotate, "annotate", "", "write the image with the entity boxes drawn to this PNG (with several images, -N is added to the name)")
	f.Float32Var(&fl.temperature, "temperature", 0, "sampling temperature (0: greedy, as the reference)")
	f.Float32Var(&fl.topP, "top-p", 0, "nucleus sampling threshold (0: off)")
	f.IntVar(&fl.topK, "top-k", 0, "sample from the k most likely tokens (0: off)")
	f.Uint64Var(&fl.seed, "seed", 0, "sampling seed")
	f.BoolVar(&fl.ignoreEOS, "ignore-eos", false, "always generate --max-new-tokens tokens (benchmarks)")
	envUsage(f)
	return cmd
}

// request builds the request for one image.
func (fl *captionFlags) request(img []byte, id string) (*pb.CaptionRequest, error) {
	if fl.stages < 0 || fl.stages > 4 {
		return nil, fmt.Errorf("--stages: must be 1 to 4 (or 0 for all four), got %d", fl.stages)
	}
	req := &pb.CaptionRequest{
		Image:     img,
		Stages:    int32(cmp.Or(fl.stages, 4)),
		Sampling:  &pb.SamplingParams{Temperature: fl.temperature, TopP: fl.topP, TopK: int32(fl.topK), Seed: fl.seed},
		IgnoreEos: fl.ignoreEOS,
		RequestId: id,
	}
	switch n := len(fl.maxNewTokens); {
	case n == 1:
		for range 4 {
			req.MaxNewTokens = append(req.MaxNewTokens, int32(fl.maxNewTokens[0]))
		}
	case n <= 4:
		for _, v := range fl.maxNewTokens {
			req.MaxNewTokens = append(req.MaxNewTokens, int32(v))
		}
	default:
		return nil, fmt.Errorf("--max-new-tokens: one value or up to 4, got %d", n)
	}
	return req, nil
}

// checkInputs fails before any call when the flags are malformed, an image
// is missing or empty, or an --annotate output cannot be written.
func (fl *captionFlags) checkInputs(paths []string) error {
	if _, err := fl.request(nil, ""); err != nil {
		return err
	}
	for i, path := range paths {
		st, err := os.Stat(path)
		switch {
		case err != nil:
			return err
		case !st.Mode().IsRegular():
			return fmt.Errorf("%s: not a regular file", path)
		case st.Size() == 0:
			return fmt.Errorf("%s: the file is empty; give a JPEG, PNG, GIF or WebP image", path)
		}
		if fl.annotate != "" {
			if err := checkWritable(annotatePath(fl.annotate, i, len(paths))); err != nil {
				return fmt.Errorf("--annotate: %w", err)
			}
		}
	}
	return nil
}

// checkWritable fails when path cannot be created or written, leaving no
// file behind that was not there before.
func checkWritable(path string) error {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if os.IsNotExist(statErr) {
		return os.Remove(path)
	}
	return nil
}

func runCaption(cmd *cobra.Command, fl *captionFlags, paths []string) error {
	if err := fl.checkInputs(paths); err != nil {
		return err
	}
	c, err := fl.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	prog := newProgress(errOut)
	defer prog.Close()
	for i, path := range paths {
		img, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		req, err := fl.request(img, filepath.Base(path))
		if err != nil {
			return err
		}
		var resp *pb.CaptionResponse
		if fl.json {
			prog.Set("captioning %s", path)
			resp, err = c.Caption(cmd.Context(), req)
			prog.Clear()
			if err == nil {
				err = json.NewEncoder(out).Encode(jsonOf(path, resp))
			}
		} else {
			if len(paths) > 1 {
				fmt.Fprintf(out, "==> %s <==\n", path)
			}
			resp, err = streamCaption(cmd.Context(), c, req, out, errOut, prog)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, rpcError(err))
		}
		if fl.annotate != "" {
			if err := writeAnnotated(annotatePath(fl.annotate, i, len(paths)), img, resp); err != nil {
				return err
			}
		}
	}
	return nil
}

// stageName is the lower-case name of a stage, e.g. "localize".
func stageName(s pb.Stage) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STAGE_"))
}

// streamCaption prints one image's stages to out as they arrive, with the
// progress on errOut, and returns the final result.
func streamCaption(ctx context.Context, c *client.Client, req *pb.CaptionRequest, out, errOut io.Writer, prog *progress) (*pb.CaptionResponse, error) {
	start := time.Now()
	prog.Set("connecting")
	for ev, err := range c.StreamCaption(ctx, req) {
		if err != nil {
			prog.Clear()
			return nil, err
		}
		switch e := ev.Event.(type) {
		case *pb.CaptionEvent_Queued:
			prog.Set("queued (%d ahead)", e.Queued.Position)
		case *pb.CaptionEvent_ImageEncoded:
			prog.Set("image encoded%s", map[bool]string{true: " (cached)"}[e.ImageEncoded.Cached])
		case *pb.CaptionEvent_StageStarted:
			s := e.StageStarted
			prog.Clear()
			fmt.Fprintf(out, "── stage %d/%d · %s ──\n", s.Stage, req.Stages, stageName(s.Stage))
			prog.Set("prefill: %d prompt tokens, %d cached", s.PromptTokens, s.CachedTokens)
		case *pb.CaptionEvent_TokenDelta:
			prog.Clear()
			fmt.Fprint(out, e.TokenDelta.Text)
		case *pb.CaptionEvent_StageFinished:
			prog.Clear()
			s := e.StageFinished
			fmt.Fprintln(out)
			if s.FinishReason == pb.FinishReason_FINISH_REASON_LENGTH {
				fmt.Fprintf(errOut, "   (stage %d cut off at its token limit: raise --max-new-tokens for a complete %s stage)\n",
					s.Stage, stageName(s.Stage))
			}
			if s.Stage != pb.Stage_STAGE_CAPTION {
				fmt.Fprintf(errOut, "   (%d entities, %d tokens in %s)\n", len(s.Entities), s.Usage.GetGeneratedTokens(),
					s.Timing.GetTotal().AsDuration().Round(time.Millisecond))
			}
			prog.Set("next stage")
		case *pb.CaptionEvent_Final:
			prog.Clear()
			r := e.Final
			fmt.Fprintf(errOut, "done: %d entities, %d mentions, %s\n", len(r.Entities), len(r.Mentions),
				time.Since(start).Round(time.Millisecond))
			return r, nil
		}
	}
	prog.Clear()
	return nil, errNoResult
}

// The --json output.
type (
	jsonEntity struct {
		Tag   string     `json:"tag,omitempty"`
		Stage int        `json:"stage"`
		Box   [4]int32   `json:"box"`       // model frame, 0–1000
		Pixel [4]float64 `json:"pixel_box"` // original image pixels
	}
	jsonStage struct {
		Stage           int          `json:"stage"`
		Name            string       `json:"name"`
		Text            string       `json:"text"`              // raw model output
		Handoff         string       `json:"handoff,omitempty"` // the list passed to the next stage
		Entities        []jsonEntity `json:"entities"`
		PromptTokens    int32        `json:"prompt_tokens"`
		CachedTokens    int32        `json:"cached_tokens"`
		GeneratedTokens int32        `json:"generated_tokens"`
		Seconds         float64      `json:"seconds"`
		FinishReason    string       `json:"finish_reason"`
	}
	jsonCaption struct {
		Image    string       `json:"image"`
		Width    int32        `json:"width"`
		Height   int32        `json:"height"`
		Stages   []jsonStage  `json:"stages"`
		Caption  string       `json:"caption"`
		Entities []jsonEntity `json:"entities"`
		Mentions []jsonEntity `json:"mentions"`
	}
)

func jsonEntities(ents []*pb.Entity) []jsonEntity {
	out := make([]jsonEntity, 0, len(ents))
	for _, e := range ents {
		b, p := e.GetBox(), e.GetPixelBox()
		out = append(out, jsonEntity{Tag: e.Tag, Stage: int(e.Stage),
			Box: [4]int32{b.GetX1(), b.GetY1(), b.GetX2(), b.GetY2()}, Pixel: [4]float64{p.GetX1(), p.GetY1(), p.GetX2(), p.GetY2()}})
	}
	return out
}

// chainEntities converts API entities back to the chain's type.
func chainEntities(ents []*pb.Entity) []chain.Entity {
	out := make([]chain.Entity, 0, len(ents))
	for _, e := range ents {
		b, p := e.GetBox(), e.GetPixelBox()
		out = append(out, chain.Entity{Tag: e.Tag, Stage: chain.Stage(e.Stage),
			Box:   chain.Box{int(b.GetX1()), int(b.GetY1()), int(b.GetX2()), int(b.GetY2())},
			Pixel: chain.PixelBox{p.GetX1(), p.GetY1(), p.GetX2(), p.GetY2()}})
	}
	return out
}

func jsonOf(path string, r *pb.CaptionResponse) jsonCaption {
	j := jsonCaption{Image: path, Width: r.ImageWidth, Height: r.ImageHeight, Caption: r.Caption,
		Entities: jsonEntities(r.Entities), Mentions: jsonEntities(r.Mentions), Stages: []jsonStage{}}
	for _, s := range r.Stages {
		j.Stages = append(j.Stages, jsonStage{
			Stage: int(s.Stage), Name: stageName(s.Stage), Text: s.Text, Handoff: s.Handoff,
			Entities: jsonEntities(s.Entities), PromptTokens: s.Usage.GetPromptTokens(),
			CachedTokens: s.Usage.GetCachedTokens(), GeneratedTokens: s.Usage.GetGeneratedTokens(),
			Seconds:      s.Timing.GetTotal().AsDuration().Seconds(),
			FinishReason: strings.ToLower(strings.TrimPrefix(s.FinishReason.String(), "FINISH_REASON_")),
		})
	}
	return j
}

// annotatePath names the annotated image of image i of n: path itself for
// one image, else path with "-i" (from 1) before its extension.
func annotatePath(path string, i, n int) string {
	if n == 1 {
		return path
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(path, ext), i+1, ext)
}

// writeAnnotated draws the result's entities on the image: the final list,
// or the last stage's list when the chain stopped before stage 2.
func writeAnnotated(path string, img []byte, r *pb.CaptionResponse) error {
	m, _, err := image.Decode(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("decode image: %w", err)
	}
	ents := r.Entities
	if len(ents) == 0 && len(r.Stages) > 0 {
		ents = r.Stages[len(r.Stages)-1].Entities
	}
	return annotate.WritePNG(path, m, chainEntities(ents))
}
