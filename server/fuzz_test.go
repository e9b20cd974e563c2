package server

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/model/imageproc"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// FuzzValidateCaption parses arbitrary wire bytes as a CaptionRequest, as
// the server does, and checks that validation never panics, that every
// failure names a field, and that every accepted request maps to a batcher
// request within the limits.
func FuzzValidateCaption(f *testing.F) {
	for _, r := range []*pb.CaptionRequest{
		{Image: []byte("x")},
		{Image: []byte("x"), Stages: 2, MaxNewTokens: []int32{5, 6}, Stop: []string{"</s>"}},
		{Image: []byte("x"), Sampling: &pb.SamplingParams{Temperature: 0.7, TopP: 0.9, TopK: 40, Seed: 1}},
		{Image: []byte("x"), Stages: -1, MaxNewTokens: []int32{1, 2, 3, 4, 5}},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v := validator{Config{}.withDefaults()}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req pb.CaptionRequest
		if proto.Unmarshal(wire, &req) != nil {
			return
		}
		if err := v.check(&req); err != nil {
			fe, ok := err.(*batcher.FieldError)
			if !ok || fe.Field == "" || !strings.HasPrefix(err.Error(), fe.Field+": ") {
				t.Fatalf("error %q does not name a field", err)
			}
			return
		}
		c := chainRequest(&req)
		if c.Stages < 0 || c.Stages > 4 || len(c.Image) == 0 || len(c.Stop) > v.cfg.Limits.MaxStopStrings {
			t.Fatalf("accepted %+v", c)
		}
		for _, n := range c.MaxNewTokens {
			if n < 0 || n > v.cfg.Limits.MaxNewTokens {
				t.Fatalf("accepted max_new_tokens %d", n)
			}
		}
		if c.Sampling.TopP < 0 || c.Sampling.TopP > 1 || !(c.Sampling.Temperature >= 0) || c.Sampling.TopK < 0 {
			t.Fatalf("accepted sampling %+v", c.Sampling)
		}
	})
}

// FuzzValidateGenerate is FuzzValidateCaption for GenerateRequest: no
// panic, every failure names a field, and every accepted request is within
// the limits, its request id logged as printable ASCII.
func FuzzValidateGenerate(f *testing.F) {
	for _, r := range []*pb.GenerateRequest{
		{Prompt: "hi"},
		{Prompt: "<image>\nhi", Raw: true, Image: []byte("x"), MaxNewTokens: 7, Stop: []string{"."}, RequestId: "g-1"},
		{Prompt: "hi", Sampling: &pb.SamplingParams{Temperature: -1}},
		{Prompt: "", MaxNewTokens: -3},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v := validator{Config{Limits: batcher.Limits{MaxPromptBytes: 64}, Image: imageproc.Limits{MaxBytes: 32}}.withDefaults()}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req pb.GenerateRequest
		if proto.Unmarshal(wire, &req) != nil {
			return
		}
		if id := sanitizeRequestID(req.GetRequestId()); len(id) > batcher.MaxRequestIDBytes ||
			strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			t.Fatalf("sanitised id %q", id)
		}
		if err := v.check(&req); err != nil {
			fe, ok := err.(*batcher.FieldError)
			if !ok || fe.Field == "" || !strings.HasPrefix(err.Error(), fe.Field+": ") {
				t.Fatalf("error %q does not name a field", err)
			}
			return
		}
		g := generateRequest(&req)
		if g.Prompt == "" || len(g.Prompt) > 64 || len(g.Image) > 32 || g.MaxNewTokens < 0 ||
			g.MaxNewTokens > v.cfg.Limits.MaxNewTokens || len(g.Stop) > v.cfg.Limits.MaxStopStrings {
			t.Fatalf("accepted %+v", g)
		}
	})
}
