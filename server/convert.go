package server

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
	"github.com/pancap-serve/pancap/sample"
)

// chainRequest maps a validated CaptionRequest to the batcher's request.
func chainRequest(r *pb.CaptionRequest) batcher.ChainRequest {
	req := batcher.ChainRequest{
		RequestID: r.GetRequestId(),
		Image:     r.GetImage(),
		Stages:    int(r.GetStages()),
		Sampling:  samplingParams(r.GetSampling()),
		Stop:      r.GetStop(),
		IgnoreEOS: r.GetIgnoreEos(),
	}
	for i, n := range r.GetMaxNewTokens() {
		req.MaxNewTokens[i] = int(n)
	}
	return req
}

// generateRequest maps a validated GenerateRequest to the batcher's request.
func generateRequest(r *pb.GenerateRequest) batcher.GenerateRequest {
	return batcher.GenerateRequest{
		RequestID:    r.GetRequestId(),
		Image:        r.GetImage(),
		Prompt:       r.GetPrompt(),
		Raw:          r.GetRaw(),
		MaxNewTokens: int(r.GetMaxNewTokens()),
		Sampling:     samplingParams(r.GetSampling()),
		Stop:         r.GetStop(),
		IgnoreEOS:    r.GetIgnoreEos(),
	}
}

func samplingParams(p *pb.SamplingParams) sample.Params {
	return sample.Params{
		Temperature: p.GetTemperature(),
		TopP:        p.GetTopP(),
		TopK:        int(p.GetTopK()),
		Seed:        p.GetSeed(),
	}
}

func stagePB(s chain.Stage) pb.Stage { return pb.Stage(s) }

func entitiesPB(ents []chain.Entity) []*pb.Entity {
	if len(ents) == 0 {
		return nil
	}
	out := make([]*pb.Entity, len(ents))
	for i, e := range ents {
		out[i] = &pb.Entity{
			Tag:      e.Tag,
			Stage:    stagePB(e.Stage),
			Box:      &pb.Box{X1: int32(e.Box[0]), Y1: int32(e.Box[1]), X2: int32(e.Box[2]), Y2: int32(e.Box[3])},
			PixelBox: &pb.PixelBox{X1: e.Pixel[0], Y1: e.Pixel[1], X2: e.Pixel[2], Y2: e.Pixel[3]},
		}
	}
	return out
}

func usagePB(u batcher.Usage) *pb.Usage {
	return &pb.Usage{
		PromptTokens:    int32(u.PromptTokens),
		CachedTokens:    int32(u.CachedTokens),
		GeneratedTokens: int32(u.GeneratedTokens),
	}
}

func durationPB(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func timingPB(t batcher.Timing) *pb.Timing {
	return &pb.Timing{Queued: durationPB(t.Queued), FirstToken: durationPB(t.FirstToken), Total: durationPB(t.Total)}
}

// finishReasons maps batcher.StageResult.Finish to the API.
var finishReasons = map[string]pb.FinishReason{
	"eos":    pb.FinishReason_FINISH_REASON_EOS,
	"length": pb.FinishReason_FINISH_REASON_LENGTH,
	"stop":   pb.FinishReason_FINISH_REASON_STOP,
}

func stageResultPB(s batcher.StageResult) *pb.StageResult {
	return &pb.StageResult{
		Stage:        stagePB(s.Stage),
		Text:         s.Text,
		TokenIds:     s.TokenIDs,
		Entities:     entitiesPB(s.Entities),
		Usage:        usagePB(s.Usage),
		Timing:       timingPB(s.Timing),
		FinishReason: finishReasons[s.Finish],
		Handoff:      s.Handoff,
	}
}

// captionResponse maps a chain result.
func captionResponse(requestID string, r *batcher.Result) *pb.CaptionResponse {
	resp := &pb.CaptionResponse{
		RequestId:   requestID,
		Caption:     r.Caption,
		Entities:    entitiesPB(r.Entities),
		Mentions:    entitiesPB(r.Mentions),
		ImageWidth:  int32(r.Width),
		ImageHeight: int32(r.Height),
	}
	for _, s := range r.Stages {
		resp.Stages = append(resp.Stages, stageResultPB(s))
	}
	return resp
}

// generateResult maps the result of a Generate request: its one stage.
func generateResult(requestID string, r *batcher.Result) *pb.GenerateResult {
	res := &pb.GenerateResult{RequestId: requestID}
	if n := len(r.Stages); n > 0 {
		s := stageResultPB(r.Stages[n-1])
		res.Text, res.TokenIds, res.Usage, res.Timing, res.FinishReason = s.Text, s.TokenIds, s.Usage, s.Timing, s.FinishReason
	}
	return res
}

// The pieces of events shared by CaptionEvent and GenerateEvent.

func queuedPB(ev *batcher.Event) *pb.Queued { return &pb.Queued{Position: int32(ev.Position)} }

func imageEncodedPB(ev *batcher.Event) *pb.ImageEncoded {
	return &pb.ImageEncoded{Cached: ev.Cached, Duration: durationPB(ev.Timing.Total), Stage: stagePB(ev.Stage)}
}

func stageStartedPB(ev *batcher.Event) *pb.StageStarted {
	return &pb.StageStarted{
		Stage:        stagePB(ev.Stage),
		PromptTokens: int32(ev.Usage.PromptTokens),
		CachedTokens: int32(ev.Usage.CachedTokens),
	}
}

func tokenDeltaPB(ev *batcher.Event) *pb.TokenDelta {
	return &pb.TokenDelta{Stage: stagePB(ev.Stage), Text: ev.Text, TokenIds: ev.TokenIDs}
}

// captionEvent maps a non-final chain event; nil for kinds the API does not carry.
func captionEvent(ev *batcher.Event) *pb.CaptionEvent {
	switch ev.Kind {
	case batcher.EventQueued:
		return &pb.CaptionEvent{Event: &pb.CaptionEvent_Queued{Queued: queuedPB(ev)}}
	case batcher.EventImageEncoded:
		return &pb.CaptionEvent{Event: &pb.CaptionEvent_ImageEncoded{ImageEncoded: imageEncodedPB(ev)}}
	case batcher.EventStageStarted:
		return &pb.CaptionEvent{Event: &pb.CaptionEvent_StageStarted{StageStarted: stageStartedPB(ev)}}
	case batcher.EventDelta:
		return &pb.CaptionEvent{Event: &pb.CaptionEvent_TokenDelta{TokenDelta: tokenDeltaPB(ev)}}
	case batcher.EventStageFinished:
		return &pb.CaptionEvent{Event: &pb.CaptionEvent_StageFinished{StageFinished: &pb.StageFinished{
			Stage:        stagePB(ev.Stage),
			Text:         ev.Text,
			Entities:     entitiesPB(ev.Entities),
			Usage:        usagePB(ev.Usage),
			Timing:       timingPB(ev.Timing),
			FinishReason: finishReasons[ev.Finish],
			Handoff:      ev.Handoff,
		}}}
	}
	return nil
}

// generateEvent maps a non-final generate event; nil for kinds the API
// does not carry (the stage-finished event: the final event follows).
func generateEvent(ev *batcher.Event) *pb.GenerateEvent {
	switch ev.Kind {
	case batcher.EventQueued:
		return &pb.GenerateEvent{Event: &pb.GenerateEvent_Queued{Queued: queuedPB(ev)}}
	case batcher.EventImageEncoded:
		return &pb.GenerateEvent{Event: &pb.GenerateEvent_ImageEncoded{ImageEncoded: imageEncodedPB(ev)}}
	case batcher.EventStageStarted:
		return &pb.GenerateEvent{Event: &pb.GenerateEvent_Started{Started: stageStartedPB(ev)}}
	case batcher.EventDelta:
		return &pb.GenerateEvent{Event: &pb.GenerateEvent_TokenDelta{TokenDelta: tokenDeltaPB(ev)}}
	}
	return nil
}
