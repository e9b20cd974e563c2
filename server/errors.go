package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/batcher"
)

// errorCodes is the one table from domain errors to gRPC codes; the first
// entry that errors.Is matches wins. Anything else is INTERNAL.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{batcher.ErrInvalidImage, codes.InvalidArgument},
	{batcher.ErrInvalidRequest, codes.InvalidArgument},
	{batcher.ErrPromptTooLong, codes.InvalidArgument},
	{batcher.ErrQueueFull, codes.ResourceExhausted},
	{batcher.ErrNotServing, codes.Unavailable},
	{batcher.ErrInternal, codes.Internal},
}

// codeOf returns the gRPC code of a domain error.
func codeOf(err error) codes.Code {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Internal
}

// rpcError turns err into a gRPC status error. When the call's ctx is done,
// the cancellation or deadline wins over whatever the backend reported, so a
// client that went away is never reported as a server failure. Errors that
// already carry a status pass through.
func rpcError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}
