package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a prefix of stdout; "" wants it empty
		wantStderr string // in stderr; "" wants it empty unless anyStderr
		anyStderr  bool
	}{
		{name: "no args", args: nil, wantCode: 2, wantStderr: usage},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantStderr: "xenbastion: unknown command \"frobnicate\"\n" + usage},
		{name: "serve without --config", args: []string{"serve"}, wantCode: 2, wantStderr: "usage: xenbastion serve --config FILE\n"},
		{name: "serve with empty --config", args: []string{"serve", "--config", ""}, wantCode: 2, wantStderr: "usage: xenbastion serve --config FILE\n"},
		{name: "serve with an argument", args: []string{"serve", "--config", missing, "now"}, wantCode: 2, wantStderr: "usage: xenbastion serve --config FILE\n"},
		{name: "serve with an unknown flag", args: []string{"serve", "--cfg", missing}, wantCode: 2, wantStderr: "flag provided but not defined: -cfg"},
		{name: "check without --config", args: []string{"check"}, wantCode: 2, wantStderr: "usage: xenbastion check --config FILE [--user NAME]\n"},
		// demo says nothing about a stray argument; a usage line would help.
		{name: "demo with an argument", args: []string{"demo", "now"}, wantCode: 2, anyStderr: true},
		{name: "demo with an unknown flag", args: []string{"demo", "--port", "22"}, wantCode: 2, wantStderr: "flag provided but not defined: -port"},
		{name: "check a missing file", args: []string{"check", "--config", missing}, wantCode: 1, wantStderr: "xenbastion: config: open " + missing},
		{name: "serve a missing file", args: []string{"serve", "--config", missing}, wantCode: 1, wantStderr: "xenbastion: config: open " + missing},
		{name: "version", args: []string{"version"}, wantStdout: "xenbastion "},
		{name: "--version", args: []string{"--version"}, wantStdout: "xenbastion "},
		{name: "help", args: []string{"help"}, wantStdout: usage},
		{name: "-h", args: []string{"-h"}, wantStdout: usage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d", tt.args, code, tt.wantCode)
			}
			if tt.wantStdout == "" && stdout.Len() > 0 || !strings.HasPrefix(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to start with %q", &stdout, tt.wantStdout)
			}
			if tt.wantStderr == "" && !tt.anyStderr && stderr.Len() > 0 || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", &stderr, tt.wantStderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("version: exit status %d, stderr %q", code, &stderr)
	}
	v, ok := strings.CutPrefix(stdout.String(), "xenbastion ")
	if !ok || !strings.HasSuffix(v, "\n") || strings.TrimSpace(v) == "" || strings.Count(v, "\n") != 1 {
		t.Errorf("version printed %q, want \"xenbastion VERSION\\n\"", &stdout)
	}
	if v := strings.TrimSpace(v); v != buildVersion() {
		t.Errorf("version printed %q, buildVersion() = %q", v, buildVersion())
	}
}
