package weights

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// f32Bytes encodes float32 values little-endian.
func f32Bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// u16Bytes encodes 16-bit patterns little-endian.
func u16Bytes(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

// writeST writes tensors as a safetensors file at path.
func writeST(t testing.TB, path string, ts ...*Tensor) {
	t.Helper()
	if err := WriteSafetensorsFile(path, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// rawST builds a safetensors file from a header JSON and a data section.
func rawST(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestSafetensorsEveryDType(t *testing.T) {
	dir := t.TempDir()
	in := []*Tensor{
		{Name: "f32", DType: F32, Shape: []int{2, 2}, Data: f32Bytes(1, -2, 0.5, 3)},
		{Name: "f16", DType: F16, Shape: []int{3}, Data: u16Bytes(0x3c00, 0xc000, 0x3800)},         // 1, -2, 0.5
		{Name: "bf16", DType: BF16, Shape: []int{1, 3}, Data: u16Bytes(0x3f80, 0xc000, 0x3f00)},    // 1, -2, 0.5
		{Name: "f64", DType: F64, Shape: []int{1}, Data: binary.LittleEndian.AppendUint64(nil, 1)}, //
		{Name: "i64", DType: I64, Shape: []int{2}, Data: make([]byte, 16)},                         //
		{Name: "i32", DType: I32, Shape: []int{1}, Data: make([]byte, 4)},                          //
		{Name: "i16", DType: I16, Shape: []int{1}, Data: make([]byte, 2)},                          //
		{Name: "i8", DType: I8, Shape: []int{3}, Data: []byte{1, 2, 3}},                            //
		{Name: "u8", DType: U8, Shape: []int{1}, Data: []byte{7}},                                  //
		{Name: "bool", DType: Bool, Shape: []int{2}, Data: []byte{0, 1}},                           //
		{Name: "scalar", DType: F32, Shape: []int{}, Data: f32Bytes(42)},                           //
		{Name: "empty", DType: F32, Shape: []int{0, 4}, Data: nil},                                 //
	}
	writeST(t, filepath.Join(dir, SafetensorsFile), in...)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := len(s.Names()); got != len(in) {
		t.Fatalf("%d tensors, want %d", got, len(in))
	}
	for _, w := range in {
		g, err := s.Get(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		if g.DType != w.DType || !bytes.Equal(g.Data, w.Data) || g.Expect(w.Shape...) != nil {
			t.Errorf("%s: got %s %v %x, want %s %v %x", w.Name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
		}
		if g.DType.Size() > 1 && len(g.Data) > 0 && uintptrOf(g.Data)%uintptr(g.DType.Size()) != 0 {
			t.Errorf("%s: data not aligned to its element size", w.Name)
		}
	}
	for _, name := range []string{"f32", "f16", "bf16"} {
		g, _ := s.Get(name)
		v, err := g.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != 1 || v[1] != -2 || v[2] != 0.5 {
			t.Errorf("%s: Float32 = %v", name, v)
		}
	}
	f32, _ := s.Get("f32")
	view, ok := f32.F32View()
	if !ok || len(view) != 4 || view[3] != 3 {
		t.Errorf("F32View = %v, %v", view, ok)
	}
	bf, _ := s.Get("bf16")
	u, err := bf.U16()
	if err != nil || len(u) != 3 || u[1] != 0xc000 {
		t.Errorf("U16 = %v, %v", u, err)
	}
	i64, _ := s.Get("i64")
	if _, err := i64.Float32(); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), "i64") {
		t.Errorf("Float32 of I64: %v", err)
	}
	if _, err := f32.U16(); !errors.Is(err, ErrDType) {
		t.Errorf("U16 of F32: %v", err)
	}
	if _, ok := i64.F32View(); ok {
		t.Error("F32View of I64 succeeded")
	}
}

func TestSafetensorsMalformed(t *testing.T) {
	good := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<40)
	neg := make([]byte, 8)
	binary.LittleEndian.PutUint64(neg, ^uint64(0))
	cases := []struct {
		name string
		file []byte
		want error
		msg  string
	}{
		{"empty file", nil, ErrFormat, "truncated"},
		{"header length over file", rawST(good, make([]byte, 8))[:20], ErrFormat, "past the end"},
		{"absurd header length", append(huge, '{'), ErrTooLarge, "over"},
		{"negative header length", append(neg, '{'), ErrTooLarge, "over"},
		{"truncated data", rawST(good, make([]byte, 5)), ErrFormat, "outside"},
		{"not json", rawST("[1,2]   ", nil), ErrFormat, "JSON object"},
		{"broken json", rawST(`{"a":`, nil), ErrFormat, "JSON"},
		{"unknown dtype", rawST(`{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), ErrFormat, "unknown dtype"},
		{"torch dtype name", rawST(`{"a":{"dtype":"float32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), ErrFormat, "unknown dtype"},
		{"negative dim", rawST(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, make([]byte, 1)), ErrFormat, "bad dimension"},
		{"overflowing shape", rawST(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)), ErrFormat, "overflows"},
		{"end before begin", rawST(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[4,3]}}`, make([]byte, 4)), ErrFormat, "outside"},
		{"negative offset", rawST(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, make([]byte, 4)), ErrFormat, "outside"},
		{"size mismatch", rawST(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrFormat, "want 12"},
		{"overlap", rawST(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), ErrFormat, "overlap"},
		{"hole", rawST(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), ErrFormat, "hole"},
		{"trailing bytes", rawST(good, make([]byte, 12)), ErrFormat, "cover"},
		{"missing offsets", rawST(`{"a":{"dtype":"U8","shape":[1]}}`, make([]byte, 1)), ErrFormat, "data_offsets"},
		{"unknown field", rawST(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, make([]byte, 1)), ErrFormat, "unknown field"},
		{"bad metadata", rawST(`{"__metadata__":{"a":1}}`, nil), ErrFormat, "__metadata__"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := OpenFile(path)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want %v containing %q and the path", err, c.want, c.msg)
			}
		})
	}
}

func TestWriteSafetensorsRejects(t *testing.T) {
	var b bytes.Buffer
	err := WriteSafetensors(&b, []*Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, nil)
	if !errors.Is(err, ErrShape) {
		t.Errorf("short data: %v", err)
	}
	err = WriteSafetensors(&b, []*Tensor{{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}}, nil)
	if !errors.Is(err, ErrFormat) {
		t.Errorf("duplicate name: %v", err)
	}
}

func FuzzSafetensorsHeader(f *testing.F) {
	f.Add(rawST(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, _, err := parseSafetensors("fuzz", data)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		for _, tt := range ts {
			if len(tt.Data) != tt.Len()*tt.DType.Size() {
				t.Fatalf("%s: %d bytes for %v %s", tt.Name, len(tt.Data), tt.Shape, tt.DType)
			}
			if tt.DType.IsFloat() {
				if _, err := tt.Float32(); err != nil {
					t.Fatal(err)
				}
			}
			_ = CheckFinite(tt)
		}
	})
}
