package bastion_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// TestCiphers drives both directions through each cipher a stock OpenSSH
// client may pick, against the bastion's patched x/crypto transport
// (third_party/README.md): a text console's echo, and a VNC client reading
// a whole frame buffer through -L.
func TestCiphers(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	vncsnapshot := testtool.NeedTool(t, "vncsnapshot")
	for _, cipher := range []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"} {
		t.Run(cipher, func(t *testing.T) {
			input := "echo " + strings.Repeat("z", 3000) + "\n"
			r := runSSH(t, b, "alice", input, []string{"-c", cipher}, "console", "web-2")
			if r.code != 0 || !strings.Contains(r.stdout, "\r\n"+strings.Repeat("z", 3000)+"\r\n") {
				t.Fatalf("console with %s: exit %d, %d bytes out, stderr %q", cipher, r.code, len(r.stdout), r.stderr)
			}

			port := freePort(t)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			tunnel := b.SSH(ctx, "alice", []string{"-N", "-c", cipher, "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:web-1:5900", port)})
			if err := tunnel.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { tunnel.Process.Kill(); tunnel.Wait() }()
			waitListening(t, port)
			shot := filepath.Join(t.TempDir(), "shot.jpg")
			if out, err := exec.CommandContext(ctx, vncsnapshot, "-allowblank", "-quality", "100", fmt.Sprintf("127.0.0.1::%d", port), shot).CombinedOutput(); err != nil {
				t.Fatalf("vncsnapshot with %s: %v\n%s", cipher, err, out)
			}
			checkPattern(t, shot)
		})
	}
	if evs := b.Events(t); len(evs) == 0 || evs[0].Event != bastion.EventAuthSuccess {
		t.Errorf("audit log starts with %+v", evs[:min(1, len(evs))])
	}
}

// TestCiphersConfigured: with Ciphers set to AES-GCM only, a stock OpenSSH
// client (chacha20-poly1305, then AES-CTR, then AES-GCM in its list)
// negotiates aes128-gcm, and one that insists on chacha20-poly1305 is told
// there is no cipher in common.
func TestCiphersConfigured(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) {
		s.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	}})
	r := runSSH(t, b, "alice", "", []string{"-v"}, "list")
	for _, dir := range []string{"server->client", "client->server"} {
		if r.code != 0 || !strings.Contains(r.stderr, dir+" cipher: aes128-gcm@openssh.com") {
			t.Fatalf("stock client: exit %d, want aes128-gcm %s; stderr:\n%s", r.code, dir, r.stderr)
		}
	}
	r = runSSH(t, b, "alice", "", []string{"-c", "chacha20-poly1305@openssh.com"}, "list")
	if r.code == 0 || !strings.Contains(r.stderr, "no matching cipher") {
		t.Fatalf("chacha20-poly1305 only: exit %d, stderr %q", r.code, r.stderr)
	}
}
