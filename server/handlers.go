package server

import (
	"context"
	"fmt"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// captioner implements pb.CaptionerServer over the Backend.
type captioner struct {
	pb.UnimplementedCaptionerServer
	s *Server
}

// submitFunc starts one request on the backend.
type submitFunc func(ctx context.Context) (<-chan batcher.Event, error)

// drive runs one request: it submits it under a context of its own, hands
// every event before EventDone to emit (nil: none), and returns the result or
// a gRPC status error. On return the request's context is cancelled and its
// event channel drained, so the backend's work always stops and its
// resources are released, whatever way the call ended.
func (c *captioner) drive(ctx context.Context, submit submitFunc, emit func(*batcher.Event) error) (*batcher.Result, error) {
	if !c.s.backend.Ready() {
		return nil, rpcError(ctx, fmt.Errorf("%w: the model is not ready (loading, restarting or shutting down)", batcher.ErrNotServing))
	}
	reqCtx, cancel := context.WithCancel(ctx)
	events, err := submit(reqCtx)
	if err != nil {
		cancel()
		return nil, rpcError(ctx, err)
	}
	defer func() {
		cancel()
		for range events { // wait for the backend to let go
		}
	}()
	for ev := range events {
		if ev.Kind == batcher.EventDone {
			switch {
			case ev.Err != nil:
				return nil, rpcError(ctx, ev.Err)
			case ev.Result == nil:
				return nil, rpcError(ctx, fmt.Errorf("%w: the backend finished without a result", batcher.ErrInternal))
			}
			return ev.Result, nil
		}
		if emit != nil {
			if err := emit(&ev); err != nil {
				return nil, rpcError(ctx, err)
			}
		}
	}
	return nil, rpcError(ctx, fmt.Errorf("%w: the backend closed the stream without a result", batcher.ErrInternal))
}

// Caption runs the chain and returns the whole result.
func (c *captioner) Caption(ctx context.Context, req *pb.CaptionRequest) (*pb.CaptionResponse, error) {
	creq := chainRequest(req)
	res, err := c.drive(ctx, func(ctx context.Context) (<-chan batcher.Event, error) {
		return c.s.backend.SubmitChain(ctx, creq)
	}, nil)
	if err != nil {
		return nil, err
	}
	return captionResponse(req.GetRequestId(), res), nil
}

// StreamCaption runs the chain and streams its events.
func (c *captioner) StreamCaption(req *pb.CaptionRequest, stream pb.Captioner_StreamCaptionServer) error {
	creq := chainRequest(req)
	ctx := stream.Context()
	res, err := c.drive(ctx, func(ctx context.Context) (<-chan batcher.Event, error) {
		return c.s.backend.SubmitChain(ctx, creq)
	}, func(ev *batcher.Event) error {
		if e := captionEvent(ev); e != nil {
			return stream.Send(e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	final := &pb.CaptionEvent{Event: &pb.CaptionEvent_Final{Final: captionResponse(req.GetRequestId(), res)}}
	if err := stream.Send(final); err != nil {
		return rpcError(ctx, err)
	}
	return nil
}

// Generate runs one free-form prompt and streams its events.
func (c *captioner) Generate(req *pb.GenerateRequest, stream pb.Captioner_GenerateServer) error {
	greq := generateRequest(req)
	ctx := stream.Context()
	res, err := c.drive(ctx, func(ctx context.Context) (<-chan batcher.Event, error) {
		return c.s.backend.SubmitGenerate(ctx, greq)
	}, func(ev *batcher.Event) error {
		if e := generateEvent(ev); e != nil {
			return stream.Send(e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	final := &pb.GenerateEvent{Event: &pb.GenerateEvent_Final{Final: generateResult(req.GetRequestId(), res)}}
	if err := stream.Send(final); err != nil {
		return rpcError(ctx, err)
	}
	return nil
}

// GetModelInfo describes the model and the limits.
func (c *captioner) GetModelInfo(ctx context.Context, _ *pb.GetModelInfoRequest) (*pb.ModelInfo, error) {
	if !c.s.backend.Ready() {
		return nil, rpcError(ctx, fmt.Errorf("%w: the model is not ready (loading, restarting or shutting down)", batcher.ErrNotServing))
	}
	sp := c.s.backend.Spec()
	cfg := c.s.cfg
	return &pb.ModelInfo{
		Name:          sp.Name,
		ServerVersion: cfg.Version,
		Architecture: &pb.Architecture{
			HiddenSize:   int32(sp.Hidden),
			VocabSize:    int32(sp.VocabSize),
			ImageTokens:  int32(sp.ImageTokens),
			ImageSize:    int32(sp.ImageSize),
			MaxContext:   int32(sp.MaxContext),
			BosTokenId:   sp.BOS,
			EosTokenId:   sp.EOS,
			KvBlockSize:  int32(sp.KVBlockSize),
			KvBlocks:     int32(sp.KVBlocks),
			KvCacheDtype: sp.KVDType,
		},
		Dtype:         sp.DType,
		Device:        sp.Device,
		RandomWeights: sp.RandomWeights,
		Limits: &pb.Limits{
			MaxRequestBytes:     int64(cfg.MaxRecvMsgBytes),
			MaxNewTokens:        int32(cfg.Limits.MaxNewTokens),
			DefaultMaxNewTokens: int32(cfg.Limits.DefaultMaxNewTokens),
			MaxStopStrings:      int32(cfg.Limits.MaxStopStrings),
			MaxStopBytes:        int32(cfg.Limits.MaxStopBytes),
			MaxStages:           int32(len(chain.Stages)),
			MaxImageBytes:       int64(cfg.Image.MaxBytes),
			MaxImagePixels:      int64(cfg.Image.MaxPixels),
			MaxImageFrames:      int32(cfg.Image.MaxFrames),
			MaxPromptBytes:      int32(cfg.Limits.MaxPromptBytes),
			MaxContextTokens:    int32(sp.MaxContext),
			MaxRequestIdBytes:   batcher.MaxRequestIDBytes,
		},
	}, nil
}
