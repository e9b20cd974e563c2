package llava

import (
	"fmt"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
)

// visionState is the vision tower's and projector's run state, grown to the
// largest image batch seen (N = images, P = patches, R = N·(P+1) rows).
type visionState struct {
	patches  []float32         // [N·P × 3·patch·patch] host staging of the patch pixels
	in       kernels.Buffer    // [N·P × 3·patch·patch]
	pe       kernels.Buffer    // [N·P × D] patch embeddings
	x, h     kernels.Buffer    // [R × D] residual stream, normed copy
	q, k, v  kernels.Buffer    // [R × D]
	att      kernels.Buffer    // [R × D]
	mlp      kernels.Buffer    // [R × M]
	feat     kernels.Buffer    // [N·P × D] selected hidden states without CLS
	proj     [2]kernels.Buffer // [N·P × H] projector ping-pong
	keepRows []int32           // [N·P] rows of x that are not CLS
}

// EncodeImages queues the vision tower and the projector for a batch of
// images on the backend's side queue (kernels.Backend.Side: a second CUDA
// stream), so a decode step queued meanwhile does not wait for it, and
// returns without waiting: result i is image i's features, Ready once the
// queue has run them. Its host work is the patch extraction and the
// launches. On the CPU backend it computes everything before returning. A
// lost device is an error wrapping engine.ErrDeviceLost (deviceLost).
func (m *Model) EncodeImages(imgs []engine.Image) (_ []engine.Features, err error) {
	defer deviceLost(&err)
	vc := m.cfg.Vision
	S, ps, D := vc.ImageSize, vc.PatchSize, vc.Hidden
	for i, img := range imgs {
		if len(img.Pixels) != 3*S*S {
			return nil, fmt.Errorf("%w: image %d has %d values, want 3×%d×%d", ErrChunk, i, len(img.Pixels), S, S)
		}
	}
	N, P, K := len(imgs), vc.Patches(), 3*ps*ps
	if N == 0 {
		return nil, nil
	}
	R := N * (P + 1)
	st, be := &m.vis, m.be.Side()
	if len(m.featPool) > 0 {
		// Released features are reused below: their last reads, queued
		// by Forward on the decode queue, come first.
		e := m.be.Record()
		be.Wait(e)
		e.Free()
	}

	// Patch extraction: the conv's weight [D × 3 × ps × ps] flattened is a
	// [D × K] matrix over patches laid out (c, y, x).
	if cap(st.patches) < N*P*K {
		st.patches = make([]float32, N*P*K)
	}
	st.patches = st.patches[:N*P*K]
	grid := S / ps
	for i, img := range imgs {
		for py := 0; py < grid; py++ {
			for px := 0; px < grid; px++ {
				dst := st.patches[((i*P)+py*grid+px)*K:]
				for c := 0; c < 3; c++ {
					for y := 0; y < ps; y++ {
						src := img.Pixels[c*S*S+(py*ps+y)*S+px*ps:]
						copy(dst[(c*ps+y)*ps:(c*ps+y+1)*ps], src[:ps])
					}
				}
			}
		}
	}
	grow(be, &st.in, N*P*K)
	grow(be, &st.pe, N*P*D)
	for _, b := range []*kernels.Buffer{&st.x, &st.h, &st.q, &st.k, &st.v, &st.att} {
		grow(be, b, R*D)
	}
	grow(be, &st.mlp, R*vc.MLP)
	be.Write(st.in, 0, st.patches)
	be.MatMul(st.pe, st.in, m.w.PatchEmbed, nil, N*P)

	// Embeddings: [CLS, patches…] + positions, then pre_layrnorm.
	st.keepRows = st.keepRows[:0]
	for i := 0; i < N; i++ {
		base := i * (P + 1)
		be.CopyWeight(st.x, base*D, m.w.ClassEmbed)
		be.Copy(st.x, (base+1)*D, st.pe, i*P*D, P*D)
		be.AddWeight(st.x, base*D, m.w.PosEmbed)
		for j := 1; j <= P; j++ {
			st.keepRows = append(st.keepRows, int32(base+j))
		}
	}
	be.LayerNorm(st.x, st.x, m.w.PreLNW, m.w.PreLNB, R, vc.Eps)

	hd := D / vc.Heads
	for l := range m.w.Vision {
		L := &m.w.Vision[l]
		be.LayerNorm(st.h, st.x, L.LN1W, L.LN1B, R, vc.Eps)
		be.MatMul(st.q, st.h, L.Q, L.QB, R)
		be.MatMul(st.k, st.h, L.K, L.KB, R)
		be.MatMul(st.v, st.h, L.V, L.VB, R)
		be.Attention(st.att, st.q, st.k, st.v, N, P+1, vc.Heads, hd)
		be.MatMul(st.h, st.att, L.O, L.OB, R)
		be.Add(st.x, st.x, st.h, R*D)

		be.LayerNorm(st.h, st.x, L.LN2W, L.LN2B, R, vc.Eps)
		be.MatMul(st.mlp, st.h, L.FC1, L.FC1B, R)
		if vc.Act == "gelu" {
			be.GELU(st.mlp, R*vc.MLP)
		} else {
			be.QuickGELU(st.mlp, R*vc.MLP)
		}
		be.MatMul(st.h, st.mlp, L.FC2, L.FC2B, R)
		be.Add(st.x, st.x, st.h, R*D)
	}

	// Drop CLS, then the projector: Linear (→ GELU → Linear)….
	H := m.cfg.Text.Hidden
	grow(be, &st.feat, N*P*D)
	be.GatherRows(st.feat, st.x, st.keepRows, D)
	grow(be, &st.proj[0], N*P*H)
	grow(be, &st.proj[1], N*P*H)
	in := st.feat
	for i, lin := range m.w.Projector {
		out := st.proj[i%2]
		if i > 0 {
			be.GELU(in, N*P*H)
		}
		be.MatMul(out, in, lin.W, lin.B, N*P)
		in = out
	}
	res := make([]engine.Features, N)
	for i := range res {
		f := &features{m: m}
		if k := len(m.featPool); k > 0 {
			f.buf, m.featPool = m.featPool[k-1], m.featPool[:k-1]
		} else {
			f.buf = be.Alloc(P * H)
		}
		be.Copy(f.buf, 0, in, i*P*H, P*H)
		f.done = be.Record()
		res[i] = f
	}
	return res, nil
}
