package main

import (
	"github.com/spf13/cobra"

	"github.com/pancap-serve/pancap/internal/app"
)

// newServeCmd runs the gRPC server.
func newServeCmd() *cobra.Command {
	var cfg *app.ServeConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the model over gRPC",
		Long: "Serve PancapChain over gRPC (pancap.v1.Captioner, grpc.health.v1, reflection) and\n" +
			"Prometheus metrics over HTTP. Every flag can also be set by its environment variable.\n" +
			"Without --model it serves the embedded default model, \"synth\": a 5.7M-parameter PancapChain\n" +
			"trained on the synthetic scenes of training/scenes.py (shapes on plain backgrounds); give it\n" +
			"such an image, or point --model at a real PancapChain checkpoint.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.Serve(cmd.Context(), *cfg)
		},
	}
	f := cmd.Flags()
	cfg = app.NewServeConfig(f)
	envUsage(f)
	return cmd
}
