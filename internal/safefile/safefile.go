// Package safefile opens and reads the files of a model checkpoint without
// trusting what the path names: anything but a regular file (a FIFO, a
// device, a socket, a directory) is refused before a byte is read from it,
// since opening a FIFO for reading blocks until a writer comes and a device
// may never end, and small files (JSON configs, tokenizers) are read only up
// to a byte limit.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Errors of this package; the errors returned wrap one of them or an
// fs.PathError.
var (
	// ErrNotRegular reports a path that names something other than a
	// regular file (after symbolic links).
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge reports a file over the caller's byte limit.
	ErrTooLarge = errors.New("file over the size limit")
)

// Open opens path for reading if it is a regular file. It stats the path
// first, so a FIFO or a device is refused without being opened; the open
// itself does not block (O_NONBLOCK), and the opened file is checked again,
// so a path swapped for a FIFO between the two is refused too.
func Open(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regular(path, st); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err = f.Stat(); err == nil {
		err = regular(path, st)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the regular file at path (see Open), refusing one of more
// than limit bytes without reading past limit+1.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

// ReadFileFS is ReadFile for a file of fsys.
func ReadFileFS(fsys fs.FS, name string, limit int64) ([]byte, error) {
	st, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, err
	}
	if err := regular(name, st); err != nil {
		return nil, err
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := regular(name, st); err != nil {
		return nil, err
	}
	return readLimited(f, name, limit)
}

func readLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, limit)
	}
	return data, nil
}

// regular returns nil when st is a regular file's, else an error naming
// what name is instead.
func regular(name string, st fs.FileInfo) error {
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	what := "a " + m.Type().String() + " file"
	switch {
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	}
	return fmt.Errorf("%s: %w: it is %s", name, ErrNotRegular, what)
}
