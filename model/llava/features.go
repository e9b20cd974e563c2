package llava

import (
	"fmt"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
)

// features is one image's encoder output, [ImageTokens × Hidden] rows in a
// buffer of the model's backend: device memory on a GPU, a host slice
// behind the buffer on the CPU backend. Forward copies its rows into the
// decoder's input on the device. It implements engine.Features.
type features struct {
	m      *Model
	buf    kernels.Buffer // [P × H]; nil once released
	done   kernels.Event  // recorded on the vision queue after buf was written
	waited bool           // the decode queue has waited for done
}

// Ready polls the encode's event (cuEventQuery on CUDA). The CPU backend
// finishes the encode before EncodeImages returns, so there features are
// ready at once.
func (f *features) Ready() bool { return f.done.Done() }

// Wait blocks until the encode has finished.
func (f *features) Wait() { f.done.Sync() }

// Release puts the buffer back in the model's pool for a later encode,
// which orders its writes after the decode work queued before it
// (EncodeImages). It makes no call that can fail.
func (f *features) Release() {
	if f.buf == nil {
		panic("llava: image features released twice")
	}
	f.done.Free()
	f.m.featPool = append(f.m.featPool, f.buf)
	f.buf = nil
}

// imageRows returns the features of chunk i as this model's, checked
// against the chunk's image rows.
func (m *Model) imageRows(i int, c *engine.Chunk, rows int) (*features, error) {
	if rows == 0 {
		if c.Image != nil {
			return nil, fmt.Errorf("%w: chunk %d names image features but has no image tokens", ErrChunk, i)
		}
		return nil, nil
	}
	f, ok := c.Image.(*features)
	switch {
	case !ok || f.m != m:
		return nil, fmt.Errorf("%w: chunk %d: %d image tokens without features of this model", ErrChunk, i, rows)
	case f.buf == nil:
		return nil, fmt.Errorf("%w: chunk %d: image features used after Release", ErrChunk, i)
	case c.ImageRow < 0 || c.ImageRow+rows > m.cfg.Vision.Patches():
		return nil, fmt.Errorf("%w: chunk %d: image rows [%d, %d) outside the image's %d", ErrChunk, i, c.ImageRow, c.ImageRow+rows, m.cfg.Vision.Patches())
	}
	return f, nil
}

// embedImages copies the image rows of the batch's chunks from their
// features into st.x, on the device, after the decode queue has waited for
// each encode (once per features).
func (m *Model) embedImages(batch []engine.Chunk) {
	st, H := &m.txt, m.cfg.Text.Hidden
	for i := range batch {
		c := &batch[i]
		if c.Image == nil {
			continue
		}
		f := c.Image.(*features) // checked by checkChunk
		if !f.waited {
			m.be.Wait(f.done)
			f.waited = true
		}
		src := c.ImageRow
		for j := 0; j < len(c.Tokens); {
			if c.Tokens[j] != engine.ImageToken {
				j++
				continue
			}
			n := 1
			for j+n < len(c.Tokens) && c.Tokens[j+n] == engine.ImageToken {
				n++
			}
			m.be.Copy(st.x, (st.seqs[i].Row+j)*H, f.buf, src*H, n*H)
			src += n
			j += n
		}
	}
}

// ReadFeatures copies an image's features to the host, [ImageTokens ×
// Hidden], waiting for its encode: for tests and tools that inspect them.
func (m *Model) ReadFeatures(f engine.Features) []float32 {
	ff := f.(*features)
	m.be.Wait(ff.done)
	ff.waited = true
	out := make([]float32, m.cfg.Vision.Patches()*m.cfg.Text.Hidden)
	m.be.Read(out, ff.buf, 0)
	return out
}
