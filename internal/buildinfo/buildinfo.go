// Package buildinfo names the build of this binary: the version stamped at
// link time (make build: git describe) and the VCS revision the go command
// embeds when it builds inside a checkout. The server reports it in
// GetModelInfo and `pancap bench` records it for the tool and the server.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// version is set at link time: -ldflags "-X
// github.com/pancap-serve/pancap/internal/buildinfo.version=…".
var version = "dev"

// Info identifies a build.
type Info struct {
	Version string // the link-time version, "dev" when not stamped
	Commit  string // VCS revision, "" when the build has none
	Dirty   bool   // the checkout had local modifications
}

// Read returns this binary's build.
func Read() Info {
	info := Info{Version: version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Dirty = s.Value == "true"
			}
		}
	}
	return info
}

// String is "VERSION (commit C[, modified])", or just VERSION when the
// build records no commit.
func (i Info) String() string {
	if i.Commit == "" {
		return i.Version
	}
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if i.Dirty {
		return fmt.Sprintf("%s (commit %s, modified)", i.Version, c)
	}
	return fmt.Sprintf("%s (commit %s)", i.Version, c)
}
