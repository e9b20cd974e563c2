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
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pancap:", err)
		os.Exit(1)
	}
}
