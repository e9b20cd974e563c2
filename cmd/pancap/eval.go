package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/pancap-serve/pancap/eval"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// evalFlags are the flags of `pancap eval`.
type evalFlags struct {
	dialFlags
	data         string
	limit        int
	json         bool
	concurrency  int
	maxNewTokens int
}

// newEvalCmd scores a running server on a held-out scene set.
func newEvalCmd() *cobra.Command {
	fl := &evalFlags{}
	cmd := &cobra.Command{
		Use:   "eval --data DIR",
		Short: "Score a running server's captions on a synthetic scene set (PancapScore-style)",
		Long: "Run the four-stage chain through the server at --addr on every image of a split written by\n" +
			"training/scenes.py (DIR holds scenes.jsonl and images/) and score it against the ground truth:\n" +
			"tag and location F1 (one-to-one matching: exact tag, then IoU >= 0.5), attribute, relation and\n" +
			"global F1 read from the captions, and Overall = tag + location + attribute + relation + 0.1 x\n" +
			"global, each x100. The final entity list of the chain is scored for tag and location too.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEval(cmd, fl) },
	}
	f := cmd.Flags()
	fl.dialFlags.register(f)
	f.StringVar(&fl.data, "data", "", "split directory with scenes.jsonl and images/ (e.g. training/data/test)")
	f.IntVar(&fl.limit, "limit", 0, "score only the first N images (0: all)")
	f.BoolVar(&fl.json, "json", false, "print the report as JSON instead of a table")
	f.IntVar(&fl.concurrency, "concurrency", 4, "images in flight at once")
	f.IntVar(&fl.maxNewTokens, "max-new-tokens", 512, "tokens per stage at most")
	_ = cmd.MarkFlagRequired("data")
	envUsage(f)
	return cmd
}

func runEval(cmd *cobra.Command, fl *evalFlags) error {
	if fl.concurrency < 1 || fl.maxNewTokens < 1 || fl.limit < 0 {
		return fmt.Errorf("eval: --concurrency and --max-new-tokens must be positive and --limit not negative")
	}
	f, err := os.Open(filepath.Join(fl.data, "scenes.jsonl"))
	if err != nil {
		return err
	}
	scenes, err := eval.ReadScenes(f)
	f.Close()
	if err != nil {
		return err
	}
	if fl.limit > 0 && fl.limit < len(scenes) {
		scenes = scenes[:fl.limit]
	}
	c, err := fl.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	prog := newProgress(cmd.ErrOrStderr())
	defer prog.Close()
	results := make([]eval.Result, len(scenes)) // per image, summed in order afterwards
	var done atomic.Int32
	g, ctx := errgroup.WithContext(cmd.Context())
	g.SetLimit(fl.concurrency)
	for i, s := range scenes {
		g.Go(func() error {
			img, err := os.ReadFile(filepath.Join(fl.data, s.Image))
			if err != nil {
				return err
			}
			n := int32(fl.maxNewTokens)
			resp, err := c.Caption(ctx, &pb.CaptionRequest{Image: img, Stages: 4, RequestId: s.ID,
				MaxNewTokens: []int32{n, n, n, n}})
			if err != nil {
				return fmt.Errorf("%s: %w", s.ID, rpcError(err))
			}
			list := make([]eval.Tagged, 0, len(resp.Entities))
			for _, e := range chainEntities(resp.Entities) {
				list = append(list, eval.Tagged{Tag: e.Tag, Box: e.Box})
			}
			results[i] = eval.Score(s, resp.Caption, list)
			prog.Set("scored %d/%d images", done.Add(1), len(scenes))
			return nil
		})
	}
	err = g.Wait()
	prog.Clear()
	if err != nil {
		return err
	}
	var total eval.Result
	for _, r := range results {
		total.Add(r)
	}
	rep := total.Report()
	if fl.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", " ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(cmd.OutOrStdout())
}
