package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// newHealthCmd asks a running server's grpc.health.v1 service whether it
// serves, optionally waiting until it does (for scripts that start a server).
func newHealthCmd() *cobra.Command {
	var (
		d    dialFlags
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check (or wait until) a running server reports SERVING",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := d.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			hc := healthpb.NewHealthClient(c.Conn())
			for {
				res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
					_, err = fmt.Fprintln(cmd.OutOrStdout(), "SERVING")
					return err
				}
				select {
				case <-ctx.Done():
					if err != nil {
						return rpcError(err)
					}
					return fmt.Errorf("server at %s reports %s", d.addr, res.GetStatus())
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
	}
	d.register(cmd.Flags())
	cmd.Flags().DurationVar(&wait, "wait", time.Second, "how long to wait for SERVING")
	return cmd
}
