package bastion

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseTarget(t *testing.T) {
	t.Parallel()
	pools := []string{"lab", "prod"}
	tests := []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{in: "web-1", want: Target{Name: "web-1"}},
		{in: "lab/web-1", want: Target{Pool: "lab", Name: "web-1"}},
		{in: "other/web-1", want: Target{Name: "other/web-1"}}, // not a pool: a name with a slash
		{in: "5a0b9d3c-6a39-4c5e-9d57-2f0c1f0e4b11", want: Target{Name: "5a0b9d3c-6a39-4c5e-9d57-2f0c1f0e4b11"}},
		{in: "Control domain on host: xs1", want: Target{Name: "Control domain on host: xs1"}},
		{in: "lab/", wantErr: true},
		{in: "", wantErr: true},
		{in: "web\x001", wantErr: true},
		{in: "web\n1", wantErr: true},
		{in: "\xff\xfe", wantErr: true},
		{in: strings.Repeat("a", 256), wantErr: true},
		{in: strings.Repeat("a", 2000), wantErr: true},
		{in: " web-1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTarget(tt.in, pools)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseTarget(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"web-1", "lab/web-1", "lab/", "/", "a/b/c", "\x00", "5a0b9d3c-6a39-4c5e-9d57-2f0c1f0e4b11", "127.0.0.1", "..", "%00", "@",
		"host:xs1", "lab/host:xs1", "uuid:5a0b9d3c-6a39-4c5e-9d57-2f0c1f0e4b11"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s, []string{"lab"})
		if err != nil {
			return
		}
		// What is accepted is printable UTF-8, bounded, and names a VM
		// or a host.
		name := got.Name + got.Host
		if (got.Name == "") == (got.Host == "") || len(s) > maxTargetLen || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\r\n") {
			t.Fatalf("ParseTarget(%q) accepted %+v", s, got)
		}
		// String gives it back as it was written (a "uuid:" prefix
		// dropped): parsed again, it is the same target.
		if again, err := ParseTarget(got.String(), []string{"lab"}); err != nil || again != got {
			t.Fatalf("ParseTarget(%q).String() = %q, which parses as %+v, %v", s, got.String(), again, err)
		}
	})
}
