package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/pancap-serve/pancap/internal/buildinfo"
)

// newVersionCmd prints the version of the binary.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "pancap %s (%s, %s/%s)\n", buildinfo.Read(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
