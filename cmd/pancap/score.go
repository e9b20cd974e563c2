package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/pancap-serve/pancap/score"
	"github.com/pancap-serve/pancap/score/judge"
	"github.com/pancap-serve/pancap/score/wordnet"
)

// scoreFlags are the flags of `pancap score`.
type scoreFlags struct {
	pred, ref                      string
	judgeURL, judgeModel, judgeKey string
	embURL, embModel, embKey       string
	wordnetDir                     string
	concurrency, retries           int
	cacheDir                       string
	noCache                        bool
	sampling                       string
	maxTokens, limit               int
	json                           bool
	jsonOut, mdOut                 string
}

// newScoreCmd scores captions with the authors' PancapScore.
func newScoreCmd() *cobra.Command {
	fl := &scoreFlags{}
	cmd := &cobra.Command{
		Use:   "score --pred PREDS --ref REFS --judge-url URL --embeddings-url URL",
		Short: "Score captions against references with PancapScore, as the Pancap authors compute it",
		Long: "Score prediction captions against reference captions with the Pancap paper's metric as its\n" +
			"authors released it (Visual-AI/Pancap pancapscore/, commit b8012a4): a judge LLM\n" +
			"(Qwen2.5-14B-Instruct) extracts and answers, entities are matched by name, WordNet synonyms,\n" +
			"sentence embeddings (all-mpnet-base-v2) and box IoU. The judge and the embedding model are\n" +
			"OpenAI-compatible servers (vLLM: /v1/chat/completions, /v1/embeddings); every reply is cached\n" +
			"under --cache-dir, so a re-run sends nothing. PREDS is `pancap caption --json` output or the\n" +
			"authors' prediction JSON; REFS the authors' reference JSON (image_path, gt_response).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runScore(cmd, fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.pred, "pred", "", "predictions: JSON lines or a JSON array (pancap caption --json, or image_path + model_response)")
	f.StringVar(&fl.ref, "ref", "", "references: JSON array or lines (image_path + gt_response, e.g. SA-Pancap's)")
	f.StringVar(&fl.judgeURL, "judge-url", "", "base URL of the judge's OpenAI-compatible server (e.g. http://127.0.0.1:8000)")
	f.StringVar(&fl.judgeModel, "judge-model", "Qwen/Qwen2.5-14B-Instruct", "judge model name, as the server knows it")
	f.StringVar(&fl.judgeKey, "judge-api-key", "", "bearer token of the judge server")
	f.StringVar(&fl.embURL, "embeddings-url", "", "base URL of the embedding model's OpenAI-compatible server")
	f.StringVar(&fl.embModel, "embeddings-model", "sentence-transformers/all-mpnet-base-v2", "embedding model name, as the server knows it")
	f.StringVar(&fl.embKey, "embeddings-api-key", "", "bearer token of the embeddings server")
	f.StringVar(&fl.wordnetDir, "wordnet-dir", wordnet.DefaultDir, "WordNet 3.0 database directory (Debian: apt-get install wordnet-base)")
	f.IntVar(&fl.concurrency, "concurrency", 8, "requests in flight per server (and images in flight)")
	f.IntVar(&fl.retries, "retries", 4, "tries again after a transport error, 429 or 5xx, with doubling waits from 1s")
	f.StringVar(&fl.cacheDir, "cache-dir", "", "cache of judge replies and embeddings (default: pancap/score under the user cache directory)")
	f.BoolVar(&fl.noCache, "no-cache", false, "neither read nor write the cache (e.g. to draw new samples with --sampling authors)")
	f.StringVar(&fl.sampling, "sampling", "greedy", "judge decoding: greedy, or authors (temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05)")
	f.IntVar(&fl.maxTokens, "max-tokens", 8192, "judge tokens per reply at most (the authors' max_new_tokens)")
	f.IntVar(&fl.limit, "limit", 0, "score only the first N predictions (0: all)")
	f.BoolVar(&fl.json, "json", false, "print the whole report as JSON instead of markdown")
	f.StringVar(&fl.jsonOut, "json-out", "", "also write the JSON report (totals, every image's scores and judge transcript) to this file")
	f.StringVar(&fl.mdOut, "md-out", "", "also write the markdown report to this file")
	for _, name := range []string{"pred", "ref", "judge-url", "embeddings-url"} {
		_ = cmd.MarkFlagRequired(name)
	}
	envUsage(f)
	return cmd
}

// readCaptions reads a caption file.
func readCaptions(path string) ([]score.Caption, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := score.ReadCaptions(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func runScore(cmd *cobra.Command, fl *scoreFlags) error {
	if fl.concurrency < 1 || fl.retries < 0 || fl.maxTokens < 1 || fl.limit < 0 {
		return fmt.Errorf("score: --concurrency and --max-tokens must be positive, --retries and --limit not negative")
	}
	sampling := judge.Sampling{}
	switch fl.sampling {
	case "greedy":
	case "authors":
		sampling = judge.Authors
	default:
		return fmt.Errorf("score: --sampling %q: want greedy or authors", fl.sampling)
	}
	preds, err := readCaptions(fl.pred)
	if err != nil {
		return err
	}
	refs, err := readCaptions(fl.ref)
	if err != nil {
		return err
	}
	if fl.limit > 0 && fl.limit < len(preds) {
		preds = preds[:fl.limit]
	}
	items, unscored, err := score.Pair(preds, refs)
	if err != nil {
		return err
	}
	wn, err := wordnet.Open(fl.wordnetDir)
	if err != nil {
		return fmt.Errorf("%w (install Debian's wordnet-base or set --wordnet-dir)", err)
	}
	var cache *judge.Cache
	if !fl.noCache {
		dir := fl.cacheDir
		if dir == "" {
			if dir, err = judge.DefaultCacheDir(); err != nil {
				return fmt.Errorf("score: no user cache directory (%w): set --cache-dir", err)
			}
		}
		cache = &judge.Cache{Dir: dir}
	}
	var sent, failed atomic.Int64
	count := func(err error) {
		sent.Add(1)
		if err != nil {
			failed.Add(1)
		}
	}
	chat := &judge.Chat{Client: judge.NewClient(judge.Endpoint{URL: fl.judgeURL, Model: fl.judgeModel, APIKey: fl.judgeKey}, fl.concurrency, cache),
		System: score.SystemPrompt, Sampling: sampling, MaxTokens: fl.maxTokens}
	emb := &judge.Embeddings{Client: judge.NewClient(judge.Endpoint{URL: fl.embURL, Model: fl.embModel, APIKey: fl.embKey}, fl.concurrency, cache), Batch: 32}
	for _, c := range []*judge.Client{chat.Client, emb.Client} {
		c.Retries, c.OnRequest = fl.retries, count
	}
	s := &score.Scorer{Judge: chat, Embedder: emb, WordNet: wn}

	prog := newProgress(cmd.ErrOrStderr())
	defer prog.Close()
	results := make([]score.ImageResult, len(items))
	var done atomic.Int32
	g, ctx := errgroup.WithContext(cmd.Context())
	g.SetLimit(fl.concurrency)
	for i, it := range items {
		g.Go(func() error {
			r, err := s.Score(ctx, it)
			if err != nil {
				return err
			}
			results[i] = r
			prog.Set("scored %d/%d images (%d requests sent, %d failed and retried)",
				done.Add(1), len(items), sent.Load(), failed.Load())
			return nil
		})
	}
	err = g.Wait()
	prog.Clear()
	if err != nil {
		return err
	}
	rep := &score.Report{Total: score.Summarize(results), Unscored: unscored, Images: results,
		Settings: score.Settings{JudgeModel: fl.judgeModel, EmbeddingsModel: fl.embModel,
			Sampling: fl.sampling, MaxTokens: fl.maxTokens, WordNet: fl.wordnetDir}}
	if err := writeScoreFiles(rep, fl); err != nil {
		return err
	}
	if fl.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", " ")
		return enc.Encode(rep)
	}
	return rep.WriteMarkdown(cmd.OutOrStdout())
}

// writeScoreFiles writes the report files asked for.
func writeScoreFiles(rep *score.Report, fl *scoreFlags) error {
	if fl.jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(fl.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if fl.mdOut != "" {
		f, err := os.Create(fl.mdOut)
		if err != nil {
			return err
		}
		err = rep.WriteMarkdown(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return nil
}
