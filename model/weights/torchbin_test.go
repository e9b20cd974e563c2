package weights

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTorchBinMatchesSafetensors(t *testing.T) {
	bin, err := OpenFile("testdata/torch/state.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	ref, err := OpenFile("testdata/torch/state_ref.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if g, w := strings.Join(bin.Names(), ","), strings.Join(ref.Names(), ","); g != w {
		t.Fatalf("names %s, want %s", g, w)
	}
	for _, name := range ref.Names() {
		g, _ := bin.Get(name)
		w, _ := ref.Get(name)
		if g.DType != w.DType || g.Expect(w.Shape...) != nil || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: got %s %v %x, want %s %v %x", name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
		}
		if g.File != "testdata/torch/state.bin" || g.Name != name {
			t.Errorf("%s: File %q Name %q", name, g.File, g.Name)
		}
	}
	a, _ := bin.Get("tied_a")
	b, _ := bin.Get("tied_b")
	if &a.Data[0] != &b.Data[0] {
		t.Error("tied weights do not share their storage")
	}
	raw, err := os.ReadFile("testdata/torch/state.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, a.Data) {
		t.Error("storage bytes not found in the archive")
	}
}

func TestTorchBinRefusesCode(t *testing.T) {
	for file, global := range map[string]string{
		"testdata/torch/evil_system.bin": "posix.system",
		"testdata/torch/evil_eval.bin":   "__builtin__.eval",
	} {
		_, err := OpenFile(file)
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), global) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v, want ErrForbidden naming %s", file, err, global)
		}
	}
	_, err := OpenFile("testdata/torch/noncontig.bin")
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "not contiguous") {
		t.Errorf("non-contiguous: %v", err)
	}
}

// rezip copies the entries of a .bin archive into a new one, letting edit
// replace the header and raw (compressed) bytes of any entry.
func rezip(t *testing.T, src string, edit func(h *zip.FileHeader, data []byte) []byte) []byte {
	t.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var data bytes.Buffer
		data.ReadFrom(rc)
		rc.Close()
		h := f.FileHeader
		raw := edit(&h, data.Bytes())
		w, err := zw.CreateRaw(&h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func deflate(data []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func TestTorchBinHostileArchives(t *testing.T) {
	src := "testdata/torch/state.bin"
	isStorage := func(h *zip.FileHeader) bool { return strings.Contains(h.Name, "/data/") }
	keep := func(h *zip.FileHeader, data []byte) []byte {
		h.CompressedSize64 = uint64(len(data))
		return data
	}
	cases := []struct {
		name string
		file []byte
		want error
		msg  string
	}{
		{"deflated storages are read", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			h.Method = zip.Deflate
			c := deflate(data)
			h.CompressedSize64 = uint64(len(c))
			return c
		}), nil, ""},
		{"zip bomb: declared ratio", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			if !strings.HasSuffix(h.Name, "data.pkl") {
				return keep(h, data)
			}
			bomb := deflate(make([]byte, 8<<20))
			h.Method, h.CompressedSize64, h.UncompressedSize64 = zip.Deflate, uint64(len(bomb)), 200<<20
			return bomb
		}), ErrTooLarge, "zip bomb"},
		{"zip bomb: more data than declared", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			if !isStorage(h) {
				return keep(h, data)
			}
			long := append(append([]byte{}, data...), make([]byte, 1<<16)...)
			c := deflate(long)
			h.Method, h.CompressedSize64, h.CRC32 = zip.Deflate, uint64(len(c)), crc32.ChecksumIEEE(long)
			return c
		}), ErrTooLarge, "longer than its declared"},
		{"storage size differs from the pickle", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			if isStorage(h) {
				data = data[:len(data)-1]
				h.UncompressedSize64, h.CRC32 = uint64(len(data)), crc32.ChecksumIEEE(data)
			}
			return keep(h, data)
		}), ErrFormat, "need"},
		{"missing storage", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			if isStorage(h) {
				h.Name = strings.Replace(h.Name, "/data/", "/gone/", 1)
			}
			return keep(h, data)
		}), ErrFormat, "no entry"},
		{"big-endian", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			if strings.HasSuffix(h.Name, "/version") { // torch ≥ 2.1 writes a byteorder entry
				h.Name = strings.TrimSuffix(h.Name, "version") + "byteorder"
				data = []byte("big")
				h.UncompressedSize64, h.CRC32 = 3, crc32.ChecksumIEEE(data)
			}
			return keep(h, data)
		}), ErrFormat, "byteorder"},
		{"no pickle", rezip(t, src, func(h *zip.FileHeader, data []byte) []byte {
			h.Name = strings.Replace(h.Name, "data.pkl", "other.pkl", 1)
			return keep(h, data)
		}), ErrFormat, "no data.pkl"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".bin")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := OpenFile(path)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if f, err := s.Get("f32"); err != nil || f.Expect(2, 3) != nil {
					t.Errorf("f32: %v", err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want %v containing %q and the path", err, c.want, c.msg)
			}
		})
	}
	legacy := filepath.Join(dir, "legacy.bin")
	os.WriteFile(legacy, []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."), 0o644)
	if _, err := OpenFile(legacy); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "torch < 1.6") {
		t.Errorf("legacy torch file: %v", err)
	}
	raw, _ := os.ReadFile(src)
	for _, n := range []int{0, 10, len(raw) / 2, len(raw) - 10} {
		if _, err := parseTorchZip("cut.bin", raw[:n]); !errors.Is(err, ErrFormat) {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
}

func TestScanPickle(t *testing.T) {
	bad := map[string][]byte{
		"no stop":            []byte("\x80\x02}q\x00"),
		"huge BINBYTES8":     []byte("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f."),
		"huge frame":         []byte("\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00."),
		"negative BINSTRING": []byte("T\xff\xff\xff\xff."),
		"unknown opcode":     []byte("\xff."),
		"unterminated line":  []byte("cos\nsystem"),
		"truncated BININT":   []byte("J\x01\x02"),
	}
	for name, p := range bad {
		if err := scanPickle(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := scanPickle([]byte("\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.")); err != nil {
		t.Errorf("valid pickle: %v", err)
	}
}

func FuzzPickle(f *testing.F) {
	f.Add([]byte("\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u."))
	f.Add([]byte("\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00."))
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 1<<16 {
			return
		}
		a := &torchArchive{file: "fuzz", entries: nil, storages: map[string]*storageRef{}}
		obj, err := a.unpickle(p)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrForbidden) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		_, _ = a.stateDict(obj)
	})
}
