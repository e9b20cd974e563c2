package weights

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func u8(name string, v ...byte) *Tensor {
	return &Tensor{Name: name, DType: U8, Shape: []int{len(v)}, Data: v}
}

func writeIndex(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStoreSharded(t *testing.T) {
	dir := t.TempDir()
	writeST(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), u8("a", 1), u8("b", 2, 3))
	writeST(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), u8("c", 4))
	idx := filepath.Join(dir, SafetensorsIndex)
	writeIndex(t, idx, `{"metadata":{"total_size":4},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}`)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Names = %v", got)
	}
	c, err := s.Get("c")
	if err != nil || c.Data[0] != 4 || !strings.HasSuffix(c.File, "model-00002-of-00002.safetensors") {
		t.Fatalf("c = %+v, %v", c, err)
	}
	_, err = s.Get("model.layers.3.mlp.up_proj.weight")
	want := "model.layers.3.mlp.up_proj.weight: missing in " + idx
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), want) {
		t.Errorf("missing: %v, want %q", err, want)
	}
	if got := s.Unused(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Unused = %v", got)
	}
	if !s.Has("a") || s.Has("zz") || !slices.Equal(s.Unused(), []string{"a", "b"}) {
		t.Error("Has is wrong or marks tensors used")
	}
	s.Put(u8("c", 9))
	s.Put(u8("d", 8))
	if got := s.Unused(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Unused after Put = %v", got)
	}
	if c, _ := s.Get("c"); c.Data[0] != 9 {
		t.Error("Put did not override")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

func TestStoreIndexErrors(t *testing.T) {
	cases := []struct {
		name, index string
		want        error
		msg         string
	}{
		{"tensor absent from shard", `{"weight_map":{"a":"s.safetensors","x":"s.safetensors"}}`, ErrMissing, "x: listed in"},
		{"missing shard", `{"weight_map":{"a":"nope.safetensors"}}`, os.ErrNotExist, "nope.safetensors"},
		{"path traversal", `{"weight_map":{"a":"../s.safetensors"}}`, ErrFormat, "not a local file"},
		{"absolute path", `{"weight_map":{"a":"/etc/passwd"}}`, ErrFormat, "not a local file"},
		{"empty map", `{"weight_map":{}}`, ErrFormat, "empty"},
		{"bad json", `{"weight_map":`, ErrFormat, SafetensorsIndex},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeST(t, filepath.Join(dir, "s.safetensors"), u8("a", 1))
			writeIndex(t, filepath.Join(dir, SafetensorsIndex), c.index)
			s, err := Open(dir)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q, want %v containing %q", err, c.want, c.msg)
			}
		})
	}
}

func TestStoreLayouts(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); !errors.Is(err, ErrNoCheckpoint) || !strings.Contains(err.Error(), dir) {
		t.Errorf("empty dir: %v", err)
	}
	// A .bin that is not a zip must not be chosen over model.safetensors.
	writeIndex(t, filepath.Join(dir, BinFile), "not a zip")
	writeST(t, filepath.Join(dir, SafetensorsFile), u8("st", 1))
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has("st") || s.Origin() != filepath.Join(dir, SafetensorsFile) {
		t.Errorf("opened %s with %v", s.Origin(), s.Names())
	}
	s.Close()
	// Non-standard names: every *.safetensors file, duplicates refused.
	dir2 := t.TempDir()
	writeST(t, filepath.Join(dir2, "x.safetensors"), u8("a", 1))
	writeST(t, filepath.Join(dir2, "y.safetensors"), u8("b", 1))
	s, err = Open(dir2)
	if err != nil || !slices.Equal(s.Names(), []string{"a", "b"}) {
		t.Fatalf("glob: %v", err)
	}
	s.Close()
	writeST(t, filepath.Join(dir2, "z.safetensors"), u8("a", 2))
	if _, err := Open(dir2); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "both") {
		t.Errorf("duplicate tensor: %v", err)
	}
}

func TestOpenFS(t *testing.T) {
	dir := t.TempDir()
	writeST(t, filepath.Join(dir, "m.safetensors"), u8("a", 5), &Tensor{Name: "w", DType: F32, Shape: []int{1}, Data: f32Bytes(2)})
	data, err := os.ReadFile(filepath.Join(dir, "m.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{
		"ckpt/llm/m.safetensors":         {Data: data},
		"ckpt/llm/" + SafetensorsIndex:   {Data: []byte(`{"weight_map":{"a":"m.safetensors","w":"m.safetensors"}}`)},
		"ckpt/clip/" + SafetensorsFile:   {Data: data},
		"ckpt/broken/" + SafetensorsFile: {Data: data[:len(data)-1]},
	}
	for _, d := range []string{"ckpt/llm", "ckpt/clip"} {
		s, err := OpenFS(fsys, d)
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.Get("w")
		if err != nil {
			t.Fatal(err)
		}
		if v, err := w.Float32(); err != nil || v[0] != 2 {
			t.Errorf("%s: w = %v, %v", d, v, err)
		}
		s.Close()
	}
	if _, err := OpenFS(fsys, "ckpt/broken"); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "ckpt/broken/model.safetensors") {
		t.Errorf("truncated: %v", err)
	}
}

func TestExpectAndCheckFinite(t *testing.T) {
	w := &Tensor{Name: "w", File: "/m/model.safetensors", DType: F32, Shape: []int{2, 3}, Data: f32Bytes(0, 1, 2, 3, 4, 5)}
	if err := w.Expect(2, 3); err != nil {
		t.Error(err)
	}
	err := w.Expect(3, 2)
	if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "/m/model.safetensors: w has shape [2 3], want [3 2]") {
		t.Errorf("Expect: %v", err)
	}
	if err := CheckFinite(w); err != nil {
		t.Error(err)
	}
	cases := []*Tensor{
		{Name: "f32", DType: F32, Shape: []int{3}, Data: f32Bytes(1, float32(nan()), 2)},
		{Name: "bf16", DType: BF16, Shape: []int{3}, Data: u16Bytes(0x3f80, 0x3f80, 0xff80)}, // -inf
		{Name: "f16", DType: F16, Shape: []int{2}, Data: u16Bytes(0x7e00, 0x3c00)},           // NaN
	}
	for _, c := range cases {
		if err := CheckFinite(c); !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), c.Name) {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	if err := CheckFinite(&Tensor{Name: "h", DType: F16, Shape: []int{1}, Data: u16Bytes(0x7bff)}); err != nil {
		t.Errorf("max half: %v", err)
	}
}

func TestStoreShardedBin(t *testing.T) {
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"testdata/torch/state.bin":                      "pytorch_model-00001-of-00002.bin",
		"testdata/lora/adapter/non_lora_trainables.bin": "pytorch_model-00002-of-00002.bin",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, dst), b, 0o644)
	}
	writeIndex(t, filepath.Join(dir, BinIndex), `{"weight_map":{"f32":"pytorch_model-00001-of-00002.bin","base_model.model.model.mm_projector.0.weight":"pytorch_model-00002-of-00002.bin"}}`)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.Get("base_model.model.model.mm_projector.0.weight")
	if err != nil || p.Expect(6, 4) != nil || p.DType != BF16 {
		t.Fatalf("projector: %+v %v", p, err)
	}
	if !s.Has("i64") || !strings.HasSuffix(s.Origin(), BinIndex) {
		t.Error("tensors beyond the index not kept, or wrong origin")
	}
	bin, _ := os.ReadFile("testdata/torch/state.bin")
	fsys := fstest.MapFS{"m/" + BinFile: {Data: bin}}
	fs, err := OpenFS(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if f, err := fs.Get("f32"); err != nil || f.Expect(2, 3) != nil || f.File != "m/"+BinFile {
		t.Errorf("OpenFS .bin: %+v %v", f, err)
	}
}

func FuzzIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":4},"weight_map":{"a":"model-00001-of-00002.safetensors"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseIndex(data)
		if err != nil {
			return
		}
		for name, file := range m {
			if !filepath.IsLocal(file) {
				t.Fatalf("%s: shard %q accepted", name, file)
			}
		}
	})
}

// TestOpenResident checks that a checkpoint read into resident memory has
// the same tensors as the mapped one, a truncated file included in its
// errors, and that an empty directory is refused alike.
func TestOpenResident(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 3<<20+5) // more than a huge page, not a multiple of one
	for i := range big {
		big[i] = byte(i * 7)
	}
	writeST(t, filepath.Join(dir, SafetensorsFile), u8("a", 1, 2, 3), u8("big", big...))
	mapped, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	res, err := OpenResident(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range mapped.Names() {
		want, _ := mapped.Get(name)
		got, err := res.Get(name)
		if err != nil || !slices.Equal(got.Data, want.Data) || !slices.Equal(got.Shape, want.Shape) {
			t.Fatalf("%s: resident %v (%v), mapped %v", name, got.Shape, err, want.Shape)
		}
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, SafetensorsFile)
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)-1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResident(t.Context(), dir); err == nil {
		t.Error("truncated checkpoint opened")
	}
	if _, err := OpenResident(t.Context(), t.TempDir()); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("empty directory: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResident(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled load: %v, want context.Canceled", err)
	}
}
