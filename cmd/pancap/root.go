package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix prefixes the environment variable of every flag: --metrics-addr
// is read from PANCAP_METRICS_ADDR when not given on the command line.
const envPrefix = "PANCAP_"

// newRootCmd builds the command tree. Each call returns a fresh tree, so
// tests can run commands in isolation.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pancap",
		Short:         "Panoptic captioning with PancapChain over gRPC",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	root.AddCommand(
		newServeCmd(), newCaptionCmd(), newGenerateCmd(), newHealthCmd(),
		newBenchCmd(), newEvalCmd(), newScoreCmd(), newModelCmd(), newVersionCmd(),
	)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, c := range root.Commands() {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
	}
	return root
}

// usageError is a command line the command cannot parse: a bad flag or
// the wrong arguments.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// errorText is what the binary prints when cmd failed with err: the error,
// and for a command line it could not parse (bad flag, arguments, unknown
// command) where to read the usage.
func errorText(cmd *cobra.Command, err error) string {
	text := "pancap: " + err.Error() + "\n"
	if errors.As(err, new(usageError)) || strings.HasPrefix(err.Error(), "unknown command") {
		text += fmt.Sprintf("Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return text
}

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, when that is set: the one place where environment
// variables become configuration.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// envUsage appends the environment variables of a command's flags to their
// usage text.
func envUsage(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
}
