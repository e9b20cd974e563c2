package buildinfo

import "testing"

func TestString(t *testing.T) {
	for _, tt := range []struct {
		in   Info
		want string
	}{
		{Info{Version: "dev"}, "dev"},
		{Info{Version: "v1.2.0", Commit: "0123456789abcdef"}, "v1.2.0 (commit 0123456789ab)"},
		{Info{Version: "dev", Commit: "abc", Dirty: true}, "dev (commit abc, modified)"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.in, got, tt.want)
		}
	}
	if Read().Version != version {
		t.Errorf("Read().Version = %q, want the link-time %q", Read().Version, version)
	}
}
