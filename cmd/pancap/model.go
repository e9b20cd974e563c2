package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pancap-serve/pancap/model/presets"
	"github.com/pancap-serve/pancap/model/weights"
)

// newModelCmd groups the commands that work on checkpoints.
func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Work with checkpoints",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newModelGenerateCmd())
	return cmd
}

// newModelGenerateCmd writes a deterministic random-weight checkpoint of a
// preset (DESIGN.md §7) in the authors' LLaVA layout.
func newModelGenerateCmd() *cobra.Command {
	var (
		preset, dtype string
		seed          uint64
	)
	cmd := &cobra.Command{
		Use:   "generate --preset NAME --out DIR",
		Short: "Write a random-weight checkpoint of a preset (" + strings.Join(presets.Names(), ", ") + ")",
		Long: "Write a deterministic random-weight checkpoint of a model preset in the authors'\n" +
			"LLaVA layout: DIR/llava (the model directory to pass to --model) and DIR/clip.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, _ := cmd.Flags().GetString("out")
			p, err := presets.Get(preset)
			if err != nil {
				return err
			}
			dt := p.DType
			if dtype != "" {
				if dt, err = weights.ParseDType(dtype); err != nil {
					return fmt.Errorf("--dtype: %w", err)
				}
			}
			if err := presets.Write(out, p, dt, seed); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s preset (%s, random weights, seed %d): serve it with --model %s\n",
				p.Name, dt, seed, presets.ModelDir(out))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&preset, "preset", "bench", "model preset: "+strings.Join(presets.Names(), ", "))
	f.String("out", "", "output directory")
	f.StringVar(&dtype, "dtype", "", "weight dtype: float32, bfloat16, float16 (empty: the preset's)")
	f.Uint64Var(&seed, "seed", 1, "random seed of the weights")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
