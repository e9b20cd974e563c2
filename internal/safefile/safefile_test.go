package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestReadLimit checks the byte limit: a file of exactly limit bytes is
// read, one byte more is refused.
func TestReadLimit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(file, 5); err != nil || string(data) != "12345" {
		t.Errorf("at the limit: %q, %v", data, err)
	}
	if _, err := ReadFile(file, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than 4 bytes") {
		t.Errorf("over the limit: %v", err)
	}
}

// TestReadFileFS checks the fs.FS variant: limit, directory, absent file.
func TestReadFileFS(t *testing.T) {
	fsys := fstest.MapFS{"d/config.json": {Data: []byte(`{"a": 1}`)}}
	if data, err := ReadFileFS(fsys, "d/config.json", 8); err != nil || string(data) != `{"a": 1}` {
		t.Errorf("read: %q, %v", data, err)
	}
	if _, err := ReadFileFS(fsys, "d/config.json", 7); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := ReadFileFS(fsys, "d", 8); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	if _, err := ReadFileFS(fsys, "d/absent", 8); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
}
