// Command pancap is Pancap Serve's one binary: `pancap serve` runs the gRPC
// server, `pancap caption` captions images with a running server, `pancap
// generate` runs one prompt, and `pancap version` prints the version.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pancap-serve/pancap/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd, err := newRootCmd().ExecuteContextC(ctx)
	stop()
	if err != nil {
		fmt.Fprint(os.Stderr, errorText(cmd, err))
		os.Exit(app.ExitStatus(err))
	}
}
