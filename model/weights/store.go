package weights

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Standard file names of Hugging Face checkpoints, in order of preference.
const (
	SafetensorsIndex = "model.safetensors.index.json"
	SafetensorsFile  = "model.safetensors"
	BinIndex         = "pytorch_model.bin.index.json"
	BinFile          = "pytorch_model.bin"
)

// MaxIndexFile bounds the size of a sharded checkpoint's index JSON.
const MaxIndexFile = 64 << 20

// Store holds the named tensors of one checkpoint. It is safe for
// concurrent use. Tensors that are views of mapped files stay valid until
// Close.
type Store struct {
	mu       sync.Mutex
	origin   string             // file or index the tensors come from, for messages
	tensors  map[string]*Tensor // by name
	used     map[string]bool    // names taken by Get since the last Put
	releases []func() error     // unmap functions of the files held
	closed   bool
}

// source reads the files of one checkpoint directory.
type source interface {
	load(name string) (data []byte, release func() error, err error)
	exists(name string) bool
	path(name string) string
	list() ([]string, error)
}

// osSource reads files of a directory on disk, memory-mapping them or, when
// resident, reading them into memory of their own (readResident).
type osSource struct {
	dir      string
	resident bool
	ctx      context.Context // resident: ends the reading of a load in progress
}

func (s osSource) load(name string) ([]byte, func() error, error) {
	if s.resident {
		return readResident(s.ctx, s.path(name))
	}
	return mapFile(s.path(name))
}
func (s osSource) path(name string) string { return filepath.Join(s.dir, filepath.FromSlash(name)) }
func (s osSource) exists(name string) bool {
	st, err := os.Stat(s.path(name))
	return err == nil && st.Mode().IsRegular()
}
func (s osSource) list() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	return entryNames(ents), err
}

// fsSource reads files of a directory of an fs.FS into memory.
type fsSource struct {
	fsys fs.FS
	dir  string
}

func (s fsSource) load(name string) ([]byte, func() error, error) {
	data, err := fs.ReadFile(s.fsys, s.path(name))
	return data, func() error { return nil }, err
}
func (s fsSource) path(name string) string { return path.Join(s.dir, name) }
func (s fsSource) exists(name string) bool {
	st, err := fs.Stat(s.fsys, s.path(name))
	return err == nil && st.Mode().IsRegular()
}
func (s fsSource) list() ([]string, error) {
	ents, err := fs.ReadDir(s.fsys, s.dir)
	return entryNames(ents), err
}

func entryNames(ents []fs.DirEntry) []string {
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

// Open opens the checkpoint in directory dir, finding its layout: a sharded
// or single safetensors checkpoint is preferred over a sharded or single
// PyTorch .bin one; a directory with neither standard name but with
// *.safetensors files opens all of them.
func Open(dir string) (*Store, error) { return openDir(osSource{dir: dir}) }

// OpenResident is Open with the files read into anonymous, read-only
// memory backed by huge pages where the kernel has them, instead of mapped:
// for a backend that streams the weights from host memory every step (the
// CPU), where they then cost fewer TLB misses and cannot be reclaimed. A
// done ctx stops the reading (between chunks of 64 MiB).
func OpenResident(ctx context.Context, dir string) (*Store, error) {
	return openDir(osSource{dir: dir, resident: true, ctx: ctx})
}

// OpenFS is Open for a directory of fsys (e.g. an embedded checkpoint). The
// files are read into memory.
func OpenFS(fsys fs.FS, dir string) (*Store, error) { return openDir(fsSource{fsys, dir}) }

// OpenFile opens a single safetensors or PyTorch .bin file, such as LLaVA's
// mm_projector.bin.
func OpenFile(file string) (*Store, error) {
	s := newStore(file)
	src := osSource{dir: filepath.Dir(file)}
	ts, err := s.loadFile(src, filepath.Base(file))
	if err != nil {
		s.Close()
		return nil, err
	}
	s.tensors = ts
	return s, nil
}

func newStore(origin string) *Store {
	return &Store{origin: origin, tensors: map[string]*Tensor{}, used: map[string]bool{}}
}

func openDir(src source) (*Store, error) {
	var s *Store
	var err error
	switch {
	case src.exists(SafetensorsIndex):
		s, err = openIndexed(src, SafetensorsIndex)
	case src.exists(SafetensorsFile):
		s, err = openFiles(src, src.path(SafetensorsFile), []string{SafetensorsFile})
	case src.exists(BinIndex):
		s, err = openIndexed(src, BinIndex)
	case src.exists(BinFile):
		s, err = openFiles(src, src.path(BinFile), []string{BinFile})
	default:
		names, lerr := src.list()
		if lerr != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoCheckpoint, src.path(""), lerr)
		}
		var files []string
		for _, n := range names {
			if strings.HasSuffix(n, ".safetensors") {
				files = append(files, n)
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%w: %s has none of %s, %s, %s, %s or *.safetensors", ErrNoCheckpoint,
				src.path(""), SafetensorsIndex, SafetensorsFile, BinIndex, BinFile)
		}
		sort.Strings(files)
		s, err = openFiles(src, src.path(""), files)
	}
	return s, err
}

// openFiles opens the named files of src into one Store; a tensor name
// found in two files is an error.
func openFiles(src source, origin string, files []string) (*Store, error) {
	s := newStore(origin)
	for _, f := range files {
		ts, err := s.loadFile(src, f)
		if err != nil {
			s.Close()
			return nil, err
		}
		for name, t := range ts {
			if prev, dup := s.tensors[name]; dup {
				s.Close()
				return nil, fmt.Errorf("%w: tensor %s in both %s and %s", ErrFormat, name, prev.File, t.File)
			}
			s.tensors[name] = t
		}
	}
	return s, nil
}

// openIndexed opens a sharded checkpoint through its index JSON, whose
// weight_map names the shard of every tensor.
func openIndexed(src source, index string) (*Store, error) {
	where := src.path(index)
	data, release, err := src.load(index)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	defer release()
	if len(data) > MaxIndexFile {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrTooLarge, where, len(data))
	}
	weightMap, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, where, err)
	}
	var files []string
	for _, f := range weightMap {
		files = append(files, f)
	}
	sort.Strings(files)
	files = slices.Compact(files)
	s := newStore(where)
	shards := make(map[string]map[string]*Tensor, len(files))
	for _, f := range files {
		if shards[f], err = s.loadFile(src, f); err != nil {
			s.Close()
			return nil, fmt.Errorf("%w (shard listed in %s)", err, where)
		}
	}
	for name, f := range weightMap {
		t, ok := shards[f][name]
		if !ok {
			s.Close()
			return nil, fmt.Errorf("%w: %s: listed in %s but absent from %s", ErrMissing, name, where, src.path(f))
		}
		s.tensors[name] = t
	}
	for _, f := range files { // tensors a shard holds beyond the index
		for name, t := range shards[f] {
			if _, listed := weightMap[name]; listed {
				continue
			}
			if prev, dup := s.tensors[name]; dup {
				s.Close()
				return nil, fmt.Errorf("%w: tensor %s in both %s and %s, not in %s", ErrFormat, name, prev.File, t.File, where)
			}
			s.tensors[name] = t
		}
	}
	return s, nil
}

// parseIndex reads the weight_map of a sharded checkpoint's index JSON and
// checks that every shard is a plain file name of the same directory tree.
func parseIndex(data []byte) (map[string]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, err
	}
	if len(idx.WeightMap) == 0 {
		return nil, errors.New("empty or missing weight_map")
	}
	for name, f := range idx.WeightMap {
		if !fs.ValidPath(f) || f == "." || strings.Contains(f, `\`) {
			return nil, fmt.Errorf("tensor %s: shard file %q is not a local file name", name, f)
		}
	}
	return idx.WeightMap, nil
}

// loadFile reads one safetensors or .bin file of src, keeping its mapping
// alive for the Store's life.
func (s *Store) loadFile(src source, name string) (map[string]*Tensor, error) {
	file := src.path(name)
	data, release, err := src.load(name)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var ts map[string]*Tensor
	ext := path.Ext(name)
	isZip := bytes.HasPrefix(data, []byte("PK\x03\x04"))
	if ext != ".safetensors" && (isZip || ext == ".bin" || ext == ".pt" || ext == ".pth") {
		ts, err = parseTorchZip(file, data)
	} else {
		ts, _, err = parseSafetensors(file, data)
	}
	if err != nil {
		release()
		return nil, err
	}
	s.releases = append(s.releases, release)
	return ts, nil
}

// Origin returns the file or index the Store was opened from.
func (s *Store) Origin() string { return s.origin }

// Get returns the named tensor and marks it used. A missing tensor is an
// error wrapping ErrMissing that names the tensor and the checkpoint.
func (s *Store) Get(name string) (*Tensor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: %s: %s", ErrClosed, s.origin, name)
	}
	t, ok := s.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s: missing in %s", ErrMissing, name, s.origin)
	}
	s.used[name] = true
	return t, nil
}

// Has reports whether the named tensor exists, without marking it used.
func (s *Store) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tensors[name]
	return ok
}

// Names returns the names of all tensors, sorted.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.tensors))
	for n := range s.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Unused returns, sorted, the names of the tensors never taken with Get
// (since they were last Put).
func (s *Store) Unused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.tensors {
		if !s.used[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Put adds t, or replaces the tensor of the same name (LoRA merges,
// non_lora_trainables). The tensor counts as unused until taken with Get.
func (s *Store) Put(t *Tensor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tensors[t.Name] = t
	delete(s.used, t.Name)
}

// Close releases the file mappings. Tensors taken from the Store must not
// be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, r := range s.releases {
		errs = append(errs, r())
	}
	s.releases, s.tensors, s.used = nil, map[string]*Tensor{}, map[string]bool{}
	return errors.Join(errs...)
}
