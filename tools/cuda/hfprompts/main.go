// Command hfprompts prints the input ids of PancapChain's four stage prompts
// for a checkpoint's tokenizer, as JSON, so that the GPU bundle can time the
// authors' procedure (tools/cuda/hf_procedure.py) in transformers on hosts
// without sentencepiece:
//
//	hfprompts --model CHECKPOINT/llava > prompts.json
//
// Each stage's prompt is templated and tokenised exactly as the server does
// (chain.Template, tokenizer.EncodeImagePrompt) with one engine.ImageToken
// where the image goes, as LLaVA's tokenizer_image_token returns it. The
// hand-off lists are empty: on a random-weight checkpoint the stages parse
// no entities, so the server's stage 2–4 prompts carry empty lists too.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/tokenizer"
)

// prompts is the JSON hfprompts prints.
type prompts struct {
	ImageToken int32     `json:"image_token"` // the id that marks the image in Stages
	Stages     [][]int32 `json:"stages"`      // input ids of stages 1–4
}

func main() {
	model := flag.String("model", "", "checkpoint folder holding tokenizer.model (the authors' LLaVA layout)")
	flag.Parse()
	if *model == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: hfprompts --model DIR")
		os.Exit(2)
	}
	tok, err := tokenizer.Load(filepath.Join(*model, "tokenizer.model"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "hfprompts:", err)
		os.Exit(1)
	}
	out := prompts{ImageToken: engine.ImageToken}
	for _, s := range chain.Stages {
		out.Stages = append(out.Stages, tokenizer.EncodeImagePrompt(tok, chain.Template(chain.Prompt(s, "")), 1))
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "hfprompts:", err)
		os.Exit(1)
	}
}
