package weights

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

// MaxSafetensorsHeader bounds the JSON header of a safetensors file; the
// header of a 13B checkpoint shard is well under 1 MiB.
const MaxSafetensorsHeader = 100 << 20

// safetensorsEntry is one tensor of a safetensors JSON header.
type safetensorsEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// parseSafetensors validates a whole safetensors file held in data and
// returns its tensors (views of data) and metadata. file names it in errors.
func parseSafetensors(file string, data []byte) (map[string]*Tensor, map[string]string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: safetensors: %s", ErrFormat, file, fmt.Sprintf(format, args...))
	}
	if len(data) < 8 {
		return nil, nil, bad("truncated: %d bytes, no header length", len(data))
	}
	hlen := binary.LittleEndian.Uint64(data)
	if hlen > MaxSafetensorsHeader {
		return nil, nil, fmt.Errorf("%w: %s: safetensors header length %d over %d", ErrTooLarge, file, hlen, MaxSafetensorsHeader)
	}
	if hlen > uint64(len(data)-8) {
		return nil, nil, bad("header length %d past the end of the %d-byte file (truncated?)", hlen, len(data))
	}
	header := data[8 : 8+hlen]
	body := data[8+hlen:]
	if len(bytes.TrimSpace(header)) == 0 || bytes.TrimSpace(header)[0] != '{' {
		return nil, nil, bad("header is not a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, nil, bad("header JSON: %v", err)
	}
	var meta map[string]string
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, nil, bad("__metadata__: %v", err)
		}
		delete(raw, "__metadata__")
	}
	type span struct {
		name       string
		begin, end int64
	}
	spans := make([]span, 0, len(raw))
	tensors := make(map[string]*Tensor, len(raw))
	for name, msg := range raw {
		var e safetensorsEntry
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, nil, bad("tensor %q: %v", name, err)
		}
		dt, err := ParseDType(e.DType)
		if err != nil || e.DType != dt.String() {
			return nil, nil, bad("tensor %q: unknown dtype %q", name, e.DType)
		}
		if e.Shape == nil || len(e.DataOffsets) != 2 {
			return nil, nil, bad("tensor %q: needs shape and two data_offsets", name)
		}
		shape := make([]int, len(e.Shape))
		for i, d := range e.Shape {
			if d < 0 || int64(int(d)) != d {
				return nil, nil, bad("tensor %q: bad dimension %d in shape %v", name, d, e.Shape)
			}
			shape[i] = int(d)
		}
		n, ok := numel(shape, dt.Size())
		if !ok {
			return nil, nil, bad("tensor %q: shape %v overflows", name, e.Shape)
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin < 0 || end < begin || end > int64(len(body)) {
			return nil, nil, bad("tensor %q: data_offsets [%d, %d] outside the %d-byte data section", name, begin, end, len(body))
		}
		if end-begin != int64(n)*int64(dt.Size()) {
			return nil, nil, bad("tensor %q: %d bytes for shape %v of %s, want %d", name, end-begin, e.Shape, dt, n*dt.Size())
		}
		spans = append(spans, span{name, begin, end})
		tensors[name] = &Tensor{Name: name, File: file, DType: dt, Shape: shape, Data: body[begin:end:end]}
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	var pos int64
	prev := ""
	for _, s := range spans {
		if s.begin < pos {
			return nil, nil, bad("tensors %q and %q overlap at byte %d", prev, s.name, s.begin)
		}
		if s.begin > pos {
			return nil, nil, bad("hole in the data section before tensor %q (bytes %d to %d)", s.name, pos, s.begin)
		}
		pos, prev = s.end, s.name
	}
	if pos != int64(len(body)) {
		return nil, nil, bad("data section is %d bytes, tensors cover %d", len(body), pos)
	}
	return tensors, meta, nil
}

// TensorSpec describes a tensor to be written by WriteSafetensorsStream.
type TensorSpec struct {
	Name  string
	DType DType
	Shape []int
}

// WriteSafetensors writes tensors and metadata to w as a safetensors file.
func WriteSafetensors(w io.Writer, tensors []*Tensor, metadata map[string]string) error {
	specs := make([]TensorSpec, len(tensors))
	for i, t := range tensors {
		specs[i] = TensorSpec{t.Name, t.DType, t.Shape}
	}
	return WriteSafetensorsStream(w, specs, metadata, func(i int, dst []byte) error {
		if len(tensors[i].Data) != len(dst) {
			return fmt.Errorf("%w: %s: %d bytes of data for shape %v of %s", ErrShape, tensors[i].Name, len(tensors[i].Data), tensors[i].Shape, tensors[i].DType)
		}
		copy(dst, tensors[i].Data)
		return nil
	})
}

// WriteSafetensorsStream writes a safetensors file to w without holding its
// tensors in memory: fill(i, dst) must write the raw little-endian bytes of
// specs[i] into dst (zeroed, exactly the tensor's size). Tensors are laid out
// by decreasing element size, then in the given order, so that every tensor
// is aligned to its element size when the file is memory-mapped; the header
// is padded with spaces to a multiple of 8 bytes as the safetensors library
// does.
func WriteSafetensorsStream(w io.Writer, specs []TensorSpec, metadata map[string]string, fill func(i int, dst []byte) error) error {
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return specs[order[a]].DType.Size() > specs[order[b]].DType.Size() })
	header := make(map[string]any, len(specs)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	sizes := make([]int, len(specs))
	var off int64
	for _, i := range order {
		s := specs[i]
		if !s.DType.valid() {
			return fmt.Errorf("%w: %s: dtype %s", ErrDType, s.Name, s.DType)
		}
		if _, dup := header[s.Name]; dup || s.Name == "" {
			return fmt.Errorf("%w: tensor name %q empty or repeated", ErrFormat, s.Name)
		}
		n, ok := numel(s.Shape, s.DType.Size())
		if !ok {
			return fmt.Errorf("%w: %s: shape %v", ErrShape, s.Name, s.Shape)
		}
		sizes[i] = n * s.DType.Size()
		header[s.Name] = map[string]any{
			"dtype":        s.DType.String(),
			"shape":        append([]int{}, s.Shape...),
			"data_offsets": [2]int64{off, off + int64(sizes[i])},
		}
		off += int64(sizes[i])
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("weights: safetensors header: %w", err)
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hj)))
	if _, err := bw.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := bw.Write(hj); err != nil {
		return err
	}
	var buf []byte
	for _, i := range order {
		if cap(buf) < sizes[i] {
			buf = make([]byte, sizes[i])
		}
		dst := buf[:sizes[i]]
		clear(dst)
		if err := fill(i, dst); err != nil {
			return fmt.Errorf("weights: writing %s: %w", specs[i].Name, err)
		}
		if _, err := bw.Write(dst); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteSafetensorsFile writes tensors and metadata to a new file at path.
func WriteSafetensorsFile(path string, tensors []*Tensor, metadata map[string]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteSafetensors(f, tensors, metadata); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
