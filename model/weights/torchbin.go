package weights

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// MaxPickle bounds the data.pkl of a .bin archive (that of a 13B checkpoint
// is a few hundred KiB).
const MaxPickle = 256 << 20

// maxDeflateRatio is the largest expansion deflate can achieve; an entry
// declaring more is a zip bomb.
const maxDeflateRatio = 1032

// storageDTypes maps the allowed torch storage classes to their dtypes.
var storageDTypes = map[string]DType{
	"FloatStorage": F32, "HalfStorage": F16, "BFloat16Storage": BF16, "DoubleStorage": F64,
	"LongStorage": I64, "IntStorage": I32, "ShortStorage": I16, "CharStorage": I8,
	"ByteStorage": U8, "BoolStorage": Bool,
}

// torchArchive is a PyTorch zip checkpoint being unpickled.
type torchArchive struct {
	file     string
	data     []byte               // the whole archive
	entries  map[string]*zip.File // by name
	prefix   string               // directory of data.pkl inside the archive, with a trailing slash
	storages map[string]*storageRef
}

// storageClass is an allowed torch.*Storage global.
type storageClass struct{ dtype DType }

// forbiddenGlobal is the error of a pickle global outside the allow-list.
type forbiddenGlobal string

// Error names the refused global.
func (g forbiddenGlobal) Error() string { return "forbidden pickle global " + string(g) }

// storageRef is a storage loaded by the pickle's persistent ids.
type storageRef struct {
	dtype DType
	numel int
	data  []byte // [numel × dtype.Size()]
}

// rebuildTensor is the allowed global torch._utils._rebuild_tensor_v2.
type rebuildTensor struct{ a *torchArchive }

// rebuildParameter is the allowed global torch._utils._rebuild_parameter.
type rebuildParameter struct{}

// parseTorchZip reads the tensors of a PyTorch (≥ 1.6) zip checkpoint held in
// data. STORED storages are views of data; compressed ones are inflated into
// memory after their sizes are checked.
func parseTorchZip(file string, data []byte) (map[string]*Tensor, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not a PyTorch zip archive (files saved by torch < 1.6 must be re-saved): %v", ErrFormat, file, err)
	}
	a := &torchArchive{file: file, data: data, entries: map[string]*zip.File{}, storages: map[string]*storageRef{}}
	var pkl *zip.File
	for _, f := range zr.File {
		a.entries[f.Name] = f
		if f.Name == "data.pkl" || strings.HasSuffix(f.Name, "/data.pkl") {
			if pkl != nil {
				return nil, fmt.Errorf("%w: %s: two data.pkl entries (%s, %s)", ErrFormat, file, pkl.Name, f.Name)
			}
			pkl = f
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("%w: %s: no data.pkl in the archive", ErrFormat, file)
	}
	a.prefix = strings.TrimSuffix(pkl.Name, "data.pkl")
	if bo, ok := a.entries[a.prefix+"byteorder"]; ok {
		order, err := a.entryBytes(bo, 16)
		if err != nil {
			return nil, err
		}
		if string(order) != "little" {
			return nil, fmt.Errorf("%w: %s: byteorder %q, only little-endian is supported", ErrFormat, file, order)
		}
	}
	if pkl.UncompressedSize64 > MaxPickle {
		return nil, fmt.Errorf("%w: %s: %s is %d bytes, over %d", ErrTooLarge, file, pkl.Name, pkl.UncompressedSize64, MaxPickle)
	}
	prog, err := a.entryBytes(pkl, int64(pkl.UncompressedSize64))
	if err != nil {
		return nil, err
	}
	obj, err := a.unpickle(prog)
	if err != nil {
		return nil, err
	}
	return a.stateDict(obj)
}

// entryBytes returns the bytes of zip entry f, which must be exactly
// f.UncompressedSize64 ≤ want bytes long: a view of the archive when STORED,
// else inflated with the size enforced.
func (a *torchArchive) entryBytes(f *zip.File, want int64) ([]byte, error) {
	size := f.UncompressedSize64
	if size > uint64(want) {
		return nil, fmt.Errorf("%w: %s: entry %s declares %d bytes, want at most %d", ErrTooLarge, a.file, f.Name, size, want)
	}
	if f.Method == zip.Store {
		off, err := f.DataOffset()
		if err != nil || f.CompressedSize64 != size || off < 0 || uint64(off) > uint64(len(a.data)) || size > uint64(len(a.data))-uint64(off) {
			return nil, fmt.Errorf("%w: %s: entry %s lies outside the archive (truncated?)", ErrFormat, a.file, f.Name)
		}
		return a.data[off : off+int64(size) : off+int64(size)], nil
	}
	if f.CompressedSize64 > uint64(len(a.data)) || size > maxDeflateRatio*(f.CompressedSize64+1) {
		return nil, fmt.Errorf("%w: %s: entry %s expands %d bytes to %d (zip bomb)", ErrTooLarge, a.file, f.Name, f.CompressedSize64, size)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: entry %s: %v", ErrFormat, a.file, f.Name, err)
	}
	defer rc.Close()
	// Grow the buffer only as data really arrives, reading one byte past
	// the declared size to catch an entry longer than it says.
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(rc, int64(size)+1))
	switch {
	case uint64(n) > size || errors.Is(err, zip.ErrFormat):
		return nil, fmt.Errorf("%w: %s: entry %s longer than its declared %d bytes (zip bomb)", ErrTooLarge, a.file, f.Name, size)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: entry %s: %v", ErrFormat, a.file, f.Name, err)
	case uint64(n) < size:
		return nil, fmt.Errorf("%w: %s: entry %s shorter than its declared %d bytes", ErrFormat, a.file, f.Name, size)
	}
	return buf.Bytes(), nil
}

// unpickle runs the pickle program with only the tensor-rebuild globals
// allowed. The program is first scanned so that no opcode can make the
// unpickler allocate more than the program's own size.
func (a *torchArchive) unpickle(prog []byte) (obj any, err error) {
	if err := scanPickle(prog); err != nil {
		return nil, fmt.Errorf("%w: %s: data.pkl: %v", ErrFormat, a.file, err)
	}
	u := pickle.NewUnpickler(bytes.NewReader(prog))
	u.FindClass = findClass(a)
	u.PersistentLoad = a.persistentLoad
	defer func() {
		if r := recover(); r != nil {
			obj, err = nil, fmt.Errorf("%w: %s: data.pkl: unpickling failed: %v", ErrFormat, a.file, r)
		}
	}()
	obj, err = u.Load()
	var fg forbiddenGlobal
	if errors.As(err, &fg) {
		return nil, fmt.Errorf("%w: %s: data.pkl names %s; only the tensor-rebuild globals are allowed", ErrForbidden, a.file, string(fg))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: data.pkl: %w", ErrFormat, a.file, err)
	}
	return obj, nil
}

// findClass returns the FindClass hook of the unpickler: the allow-list.
// (gopickle itself resolves collections.OrderedDict, __builtin__.object and
// copy_reg._reconstructor to inert Go values that run no code.)
func findClass(a *torchArchive) func(module, name string) (any, error) {
	return func(module, name string) (any, error) {
		switch module + "." + name {
		case "torch._utils._rebuild_tensor_v2":
			return rebuildTensor{a}, nil
		case "torch._utils._rebuild_parameter":
			return rebuildParameter{}, nil
		}
		if dt, ok := storageDTypes[name]; ok && module == "torch" {
			return storageClass{dt}, nil
		}
		return nil, forbiddenGlobal(module + "." + name)
	}
}

// persistentLoad resolves ('storage', class, key, location, numel) ids to
// the archive's data/<key> entries, each loaded once.
func (a *torchArchive) persistentLoad(pid any) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok || t.Len() != 5 {
		return nil, fmt.Errorf("persistent id %v is not a 5-tuple", pid)
	}
	kind, _ := t.Get(0).(string)
	cls, okCls := t.Get(1).(storageClass)
	key, okKey := t.Get(2).(string)
	numel, okN := t.Get(4).(int)
	if kind != "storage" || !okCls || !okKey || !okN || numel < 0 {
		return nil, fmt.Errorf("persistent id %v is not a torch storage", []any(*t))
	}
	if s, ok := a.storages[key]; ok {
		if s.dtype != cls.dtype || s.numel != numel {
			return nil, fmt.Errorf("storage %s used as %s×%d and %s×%d", key, s.dtype, s.numel, cls.dtype, numel)
		}
		return s, nil
	}
	f, ok := a.entries[a.prefix+"data/"+key]
	if !ok {
		return nil, fmt.Errorf("storage %s: no entry %sdata/%s", key, a.prefix, key)
	}
	n, ok := numel64(numel, cls.dtype.Size())
	if !ok {
		return nil, fmt.Errorf("storage %s: %d elements overflow", key, numel)
	}
	if f.UncompressedSize64 != uint64(n) {
		return nil, fmt.Errorf("storage %s: entry holds %d bytes, %d %s elements need %d", key, f.UncompressedSize64, numel, cls.dtype, n)
	}
	data, err := a.entryBytes(f, n)
	if err != nil {
		return nil, err
	}
	s := &storageRef{dtype: cls.dtype, numel: numel, data: data}
	a.storages[key] = s
	return s, nil
}

func numel64(n, size int) (int64, bool) {
	v, ok := numel([]int{n}, size)
	return int64(v) * int64(size), ok
}

// Call rebuilds a tensor from (storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]); only contiguous layouts are
// accepted.
func (r rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %d arguments", len(args))
	}
	st, ok := args[0].(*storageRef)
	offset, okOff := args[1].(int)
	size, okSize := intTuple(args[2])
	stride, okStride := intTuple(args[3])
	if !ok || !okOff || !okSize || !okStride || len(size) != len(stride) || offset < 0 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: bad arguments %v", args[:4])
	}
	n, ok := numel(size, st.dtype.Size())
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: bad size %v", size)
	}
	want := 1
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want {
			return nil, fmt.Errorf("_rebuild_tensor_v2: size %v with stride %v is not contiguous; save a .contiguous() copy", size, stride)
		}
		want *= size[i]
	}
	if offset > st.numel || n > st.numel-offset {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %d elements at offset %d past the %d-element storage", n, offset, st.numel)
	}
	es := st.dtype.Size()
	return &Tensor{File: r.a.file, DType: st.dtype, Shape: size, Data: st.data[offset*es : (offset+n)*es : (offset+n)*es]}, nil
}

// Call unwraps a Parameter to its tensor.
func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, fmt.Errorf("_rebuild_parameter: no arguments")
	}
	t, ok := args[0].(*Tensor)
	if !ok {
		return nil, fmt.Errorf("_rebuild_parameter: %T is not a tensor", args[0])
	}
	return t, nil
}

func intTuple(v any) ([]int, bool) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, false
	}
	out := make([]int, t.Len())
	for i := range out {
		if out[i], ok = t.Get(i).(int); !ok {
			return nil, false
		}
	}
	return out, true
}

// stateDict turns the unpickled top-level dict into named tensors. Entries
// sharing one tensor (tied weights) get their own Tensor values over the
// same bytes.
func (a *torchArchive) stateDict(obj any) (map[string]*Tensor, error) {
	out := map[string]*Tensor{}
	add := func(k, v any) error {
		name, ok := k.(string)
		if !ok {
			return fmt.Errorf("%w: %s: state dict key %v is not a string", ErrFormat, a.file, k)
		}
		t, ok := v.(*Tensor)
		if !ok {
			return fmt.Errorf("%w: %s: %s is a %T, not a tensor", ErrFormat, a.file, name, v)
		}
		if _, dup := out[name]; dup {
			return fmt.Errorf("%w: %s: tensor %s twice", ErrFormat, a.file, name)
		}
		c := *t
		c.Name = name
		out[name] = &c
		return nil
	}
	switch d := obj.(type) {
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			ent := e.Value.(*types.OrderedDictEntry)
			if err := add(ent.Key, ent.Value); err != nil {
				return nil, err
			}
		}
	case *types.Dict:
		for _, ent := range *d {
			if err := add(ent.Key, ent.Value); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: %s: top-level object is a %T, not a state dict", ErrFormat, a.file, obj)
	}
	return out, nil
}
