package batcher

import "errors"

// Sentinel errors of the batcher. Errors returned by SubmitChain,
// SubmitGenerate and carried by EventDone wrap one of these, so the server
// maps them to gRPC codes with errors.Is.
var (
	ErrInvalidImage   = errors.New("invalid image")              // undecodable, unsupported or over a limit
	ErrInvalidRequest = errors.New("invalid request")            // a bad parameter
	ErrPromptTooLong  = errors.New("prompt exceeds the context") // prompt + max new tokens > context
	ErrQueueFull      = errors.New("queue full")                 // admission refused: overload
	ErrNotServing     = errors.New("not serving")                // shutting down, the step loop is restarting, or the device is lost
	ErrInternal       = errors.New("internal error")             // a failure of ours (e.g. a recovered panic)
)
