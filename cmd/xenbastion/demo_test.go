package main

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// TestDemo sets $HOME, so it cannot be parallel.
func TestDemo(t *testing.T) {
	tests := []struct {
		name string
		// ownKey puts a key pair in ~/.ssh, named keyName (default
		// id_ed25519), which the demo admits; without one, the demo
		// makes a key pair.
		ownKey  bool
		keyName string
		// orphanPub adds ~/.ssh/id_ed25519.pub of another key, without
		// its private key: ssh cannot use it.
		orphanPub bool
	}{
		{name: "own key", ownKey: true},
		{name: "own key, a name ssh does not try", ownKey: true, keyName: "work"},
		{name: "own key, a name ssh does not try, beside a lone id_ed25519.pub", ownKey: true, keyName: "work", orphanPub: true},
		{name: "made key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home, dir := t.TempDir(), t.TempDir()
			t.Setenv("HOME", home)
			var key gossh.Signer
			if tt.ownKey {
				var line string
				key, line = newUserKey(t)
				if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
					t.Fatal(err)
				}
				keyName := cmp.Or(tt.keyName, "id_ed25519")
				writeFile(t, filepath.Join(home, ".ssh"), keyName+".pub", line+"\n")
				// The demo only looks for the private key's file.
				writeFile(t, filepath.Join(home, ".ssh"), keyName, "(private key)\n")
				if tt.orphanPub {
					_, other := newUserKey(t)
					writeFile(t, filepath.Join(home, ".ssh"), "id_ed25519.pub", other+"\n")
				}
			}

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var stdout, stderr testtool.SyncBuffer
			errc := make(chan error, 1)
			go func() { errc <- demo(ctx, "127.0.0.1:0", dir, &stdout, &stderr) }()
			addr := waitFor(t, &stdout, regexp.MustCompile(`the bastion on (\S+)\n`), errc)
			t.Logf("stdout:\n%s", &stdout)

			identity := filepath.Join(dir, "id_ed25519")
			_, err := os.Stat(identity)
			if tt.ownKey {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the demo made %s (%v) although ~/.ssh has a key", identity, err)
				}
				own := filepath.Join(home, ".ssh", tt.keyName)
				switch {
				case tt.keyName == "" && strings.Contains(stdout.String(), " -i "):
					t.Errorf("the demo tells ssh to use an identity although ~/.ssh has a key ssh tries")
				case tt.keyName != "" && !strings.Contains(stdout.String(), " -i "+own+" "):
					t.Errorf("the demo does not tell ssh to use %s", own)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(stdout.String(), "ssh -p ") || !strings.Contains(stdout.String(), " -i "+identity+" ") {
					t.Errorf("the demo does not tell ssh to use %s", identity)
				}
				data, err := os.ReadFile(identity)
				if err != nil {
					t.Fatal(err)
				}
				if key, err = gossh.ParsePrivateKey(data); err != nil {
					t.Fatal(err)
				}
			}

			hostKey := hostPublicKey(t, filepath.Join(dir, "ssh_host_ed25519_key"))
			out := sshRun(t, addr, currentUser(), key, hostKey, "list")
			want := []string{"build-1", "db-1", "web-1", "web-2"}
			if got := listNames(out); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("list = %q, want %q; output:\n%s", got, want, out)
			}

			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("demo returned %v after its context was cancelled", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("demo did not return 15 s after its context was cancelled")
			}
			audit, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
			if err != nil || !strings.Contains(string(audit), `"event":"auth.success"`) {
				t.Errorf("audit log %q, %v; want an auth.success event", audit, err)
			}
		})
	}
}
