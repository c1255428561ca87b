package bastion_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
	"github.com/xenbastion/xenbastion/xapi/xapitest/rfb"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// These tests drive a bastion with the real OpenSSH client, as users do.

// result is what an ssh command left.
type result struct {
	stdout, stderr string
	code           int
}

func runSSH(t *testing.T, b *bastiontest.Bastion, user string, stdin string, extra []string, command ...string) result {
	t.Helper()
	testtool.NeedTool(t, "ssh")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := b.SSH(ctx, user, extra, command...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ssh: %v", err)
	}
	return result{out.String(), errb.String(), code}
}

func TestList(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Users: []bastiontest.User{
		{Name: "alice", Allow: []string{"*"}},
		{Name: "bob", Allow: []string{"web-*"}},
		{Name: "carol"},
	}})
	r := runSSH(t, b, "alice", "", nil, "list")
	if r.code != 0 {
		t.Fatalf("list: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !regexp.MustCompile(`^POOL\s+NAME\s+POWER\s+CONSOLES\s+UUID$`).MatchString(lines[0]) {
		t.Errorf("header = %q", lines[0])
	}
	want := []string{`lab\s+build-1\s+Halted\s+\S+\s+`, `lab\s+db-1\s+Running\s+rfb\s+`, `lab\s+web-1\s+Running\s+rfb,vt100\s+`, `lab\s+web-2\s+Running\s+rfb,vt100\s+`}
	if len(lines) != len(want)+1 {
		t.Fatalf("list shows %d VMs, want %d (no templates, snapshots or control domains):\n%s", len(lines)-1, len(want), r.stdout)
	}
	for i, w := range want {
		if !regexp.MustCompile("^" + w + `[0-9a-f-]{36}$`).MatchString(lines[i+1]) {
			t.Errorf("line %d = %q, want %s", i+1, lines[i+1], w)
		}
	}

	r = runSSH(t, b, "bob", "", nil, "list", "--json")
	var entries []bastion.ListEntry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || r.code != 0 {
		t.Fatalf("list --json: %v, exit %d: %q", err, r.code, r.stdout)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Pool != "lab" || len(e.UUID) != 36 || e.PowerState != "Running" || strings.Join(e.Consoles, ",") != "rfb,vt100" {
			t.Errorf("entry %+v", e)
		}
	}
	if strings.Join(names, ",") != "web-1,web-2" {
		t.Errorf("bob sees %v, want web-1, web-2", names)
	}

	r = runSSH(t, b, "carol", "", nil, "list", "--json")
	if strings.TrimSpace(r.stdout) != "[]" || r.code != 0 {
		t.Errorf("carol (nothing allowed): %q, exit %d", r.stdout, r.code)
	}
}

func TestCommandErrors(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	tests := []struct {
		name    string
		command []string
		code    int
		stderr  string
	}{
		{"no command without a terminal prints help", nil, 2, "Commands:"},
		{"unknown command", []string{"reboot", "web-1"}, 2, `unknown command "reboot"`},
		{"console without VM", []string{"console"}, 2, "usage: console VM"},
		{"list with a bad flag", []string{"list", "--xml"}, 2, "usage: list [--json]"},
		{"shell metacharacters are not a shell", []string{"list;", "cat", "/etc/passwd"}, 2, "unknown command"},
		{"halted VM", []string{"console", "build-1"}, 1, "VM build-1 is halted"},
		{"no text console", []string{"console", "db-1"}, 1, "VM db-1 has no text (vt100) console"},
		{"unknown VM", []string{"console", "nope"}, 1, `no VM "nope" that you may open`},
		{"help", []string{"help"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runSSH(t, b, "alice", "", nil, tt.command...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, tt.code, tt.stderr)
			}
		})
	}
}

// TestConsoleNoPTY pipes a command into a text console: bytes pass through
// unchanged, and after the input ends the output is relayed until quiet.
func TestConsoleNoPTY(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	b.Sim.AddVM(xapitest.VMSpec{Name: "build box", Host: 1})
	for _, vm := range []string{"web-1", "web-2" /* on a member host */, "lab/web-1", "build box", `"build box"`} {
		t.Run(vm, func(t *testing.T) {
			r := runSSH(t, b, "alice", "echo hello\n", nil, "console", vm)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			want := "echo hello\r\nhello\r\n"
			if !strings.HasPrefix(r.stdout, want) {
				t.Errorf("stdout %q, want it to start with %q", r.stdout, want)
			}
		})
	}
	// console.start and console.end, with the counters.
	end := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd && ev.VM == "web-2" })
	if end.Via != "command" || end.Protocol != "vt100" || end.Pool != "lab" || *end.BytesIn != int64(len("echo hello\n")) ||
		*end.BytesOut == 0 || end.Reason != bastion.EndInputDone || end.User != "alice" || !strings.HasPrefix(end.KeyFingerprint, "SHA256:") {
		t.Errorf("console.end = %+v", end)
	}
	start := b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventConsoleStart && ev.SessionID == end.SessionID
	})
	if start.VMUUID != end.VMUUID || start.ConnID != end.ConnID || start.RemoteAddr == "" {
		t.Errorf("console.start = %+v", start)
	}
}

// TestConsolePTY uses a terminal (ssh -tt): Ctrl-] detaches with exit 0.
func TestConsolePTY(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	testtool.NeedTool(t, "ssh")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := b.SSH(ctx, "alice", []string{"-tt"}, "console", "web-1")
	stdin, _ := cmd.StdinPipe()
	var out testtool.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "Ctrl-] to detach")
	io.WriteString(stdin, "hostname\r")
	waitFor(t, &out, "web-1\r\nroot@web-1:~# ")
	io.WriteString(stdin, "\x1d")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ssh -tt console: %v\n%s", err, out.String())
	}
	end := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd })
	if end.Reason != bastion.EndDetached || *end.BytesIn != int64(len("hostname\r")) {
		t.Errorf("console.end = %+v", end)
	}
}

// TestPrompt uses the prompt a terminal gets without a command.
func TestPrompt(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	testtool.NeedTool(t, "ssh")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := b.SSH(ctx, "alice", []string{"-tt"})
	stdin, _ := cmd.StdinPipe()
	var out testtool.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "xenbastion> ")
	io.WriteString(stdin, "list\r")
	waitFor(t, &out, "web-2")
	io.WriteString(stdin, "console web-1\r")
	waitFor(t, &out, "Ctrl-] to detach")
	io.WriteString(stdin, "echo from-prompt\r")
	waitFor(t, &out, "from-prompt\r\nroot@web-1:~# ")
	io.WriteString(stdin, "\x1d")
	waitFor(t, &out, "detached from web-1")
	io.WriteString(stdin, "bogus\r")
	waitFor(t, &out, `unknown command "bogus"`)
	io.WriteString(stdin, "exit\r")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("prompt: %v\n%s", err, out.String())
	}
}

// TestForwardSOCKS opens a console through "ssh -D" with a SOCKS5 request
// for VM:5900, as a VNC client behind a SOCKS proxy setting would.
func TestForwardSOCKS(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	testtool.NeedTool(t, "ssh")
	port := freePort(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tunnel := b.SSH(ctx, "alice", []string{"-N", "-D", fmt.Sprintf("127.0.0.1:%d", port)})
	if err := tunnel.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { tunnel.Process.Kill(); tunnel.Wait() }()
	waitListening(t, port)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	host := "web-2"
	req := append([]byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}, host...)
	req = append(req, 5900>>8, 5900&0xff)
	c.Write(req)
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil || reply[3] != 0 {
		t.Fatalf("SOCKS reply %v, %v", reply, err)
	}
	banner := make([]byte, 12)
	if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "RFB 003.008\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
}

// TestConsoleEnds checks what the user sees when the pool closes the
// console and when the bastion shuts down.
func TestConsoleEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		end    func(b *bastiontest.Bastion, ssh *exec.Cmd)
		stderr string
		reason string
	}{
		{"pool closes", func(b *bastiontest.Bastion, _ *exec.Cmd) { b.Sim.PowerOff("web-1") }, "the pool closed the console of web-1", bastion.EndConsoleClosed},
		{"client vanishes", func(_ *bastiontest.Bastion, ssh *exec.Cmd) { ssh.Process.Kill() }, "", bastion.EndDisconnected},
		{"server shuts down", func(b *bastiontest.Bastion, _ *exec.Cmd) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Server.Shutdown(ctx); err != nil {
				panic(err)
			}
		}, "the bastion is shutting down", bastion.EndShutdown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := bastiontest.Start(t, bastiontest.Options{})
			testtool.NeedTool(t, "ssh")
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := b.SSH(ctx, "alice", nil, "console", "web-1")
			stdin, _ := cmd.StdinPipe() // kept open: the input does not end
			defer stdin.Close()
			var out, errb testtool.SyncBuffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			io.WriteString(stdin, "echo ready\n")
			waitFor(t, &out, "ready\r\n")
			tt.end(b, cmd)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); tt.stderr != "" && (!ok || ee.ExitCode() != 1) {
				t.Errorf("exit: %v, want status 1", err)
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q, want %q", errb.String(), tt.stderr)
			}
			end := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd })
			if end.Reason != tt.reason {
				t.Errorf("console.end reason %q, want %q", end.Reason, tt.reason)
			}
		})
	}
}

// TestForwardVNC reads the test pattern with a real VNC client through
// "ssh -L", for a VM on the master and one on a member host.
func TestForwardVNC(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	vncsnapshot := testtool.NeedTool(t, "vncsnapshot")
	testtool.NeedTool(t, "ssh")
	for _, vm := range []string{"web-1", "db-1"} {
		t.Run(vm, func(t *testing.T) {
			port := freePort(t)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			tunnel := b.SSH(ctx, "alice", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:%s:5900", port, vm)})
			var terr testtool.SyncBuffer
			tunnel.Stderr = &terr
			if err := tunnel.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { tunnel.Process.Kill(); tunnel.Wait() }()
			waitListening(t, port)
			shot := filepath.Join(t.TempDir(), "shot.jpg")
			snap := exec.CommandContext(ctx, vncsnapshot, "-allowblank", "-quality", "100", fmt.Sprintf("127.0.0.1::%d", port), shot)
			if out, err := snap.CombinedOutput(); err != nil {
				t.Fatalf("vncsnapshot: %v\n%s\nssh: %s", err, out, terr.String())
			}
			checkPattern(t, shot)
			// waitListening's probe opened a console too; the snapshot's
			// is the one that carried the frame buffer.
			end := b.WaitEvent(t, func(ev bastion.Event) bool {
				return ev.Event == bastion.EventConsoleEnd && ev.VM == vm && *ev.BytesIn > 0
			})
			if end.Via != "forward" || end.Protocol != "rfb" || *end.BytesOut < rfb.Width*rfb.Height*3 || *end.BytesIn == 0 {
				t.Errorf("console.end = %+v", end)
			}
		})
	}
}

// TestForwardRefused checks forwards the bastion must refuse, with "ssh -W"
// (a direct-tcpip channel, as -L opens).
func TestForwardRefused(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Users: []bastiontest.User{{Name: "bob", Allow: []string{"web-*", "twin"}}}})
	twinA := b.Sim.AddVM(xapitest.VMSpec{Name: "twin"})
	twinB := b.Sim.AddVM(xapitest.VMSpec{Name: "twin", Host: 1})
	b.Sim.AddVM(xapitest.VMSpec{Name: "secret"})
	denied := "administratively prohibited: no VM %q that you may open"
	tests := []struct {
		target string
		stderr string
	}{
		{"web-1:22", "only port 5900"},
		{"127.0.0.1:5900", fmt.Sprintf(denied, "127.0.0.1")},
		{"localhost:5900", fmt.Sprintf(denied, "localhost")},
		{"nope:5900", fmt.Sprintf(denied, "nope")},
		{"db-1:5900", fmt.Sprintf(denied, "db-1")},     // exists, not allowed
		{"secret:5900", fmt.Sprintf(denied, "secret")}, // exists, not allowed
		{"twin:5900", "use one of their UUIDs: "},
	}
	t.Run("refusals", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.target, func(t *testing.T) {
				t.Parallel()
				r := runSSH(t, b, "bob", "", []string{"-W", tt.target})
				if r.code == 0 || !strings.Contains(r.stderr, tt.stderr) {
					t.Errorf("exit %d, stderr %q; want refusal with %q", r.code, r.stderr, tt.stderr)
				}
				if strings.HasPrefix(tt.target, "twin") {
					for _, u := range []string{twinA.UUID, twinB.UUID} {
						if !strings.Contains(r.stderr, u) {
							t.Errorf("ambiguity message %q lacks %s", r.stderr, u)
						}
					}
				}
			})
		}
	})
	// Every refusal is audited; for a VM bob may not open, the audit
	// record does not name it either.
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventConsoleDenied && ev.Target == "db-1" && ev.VMUUID == "" && ev.Reason == "not permitted"
	})
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventConsoleDenied && ev.Target == "web-1" && ev.Reason == "port 22 not served"
	})
}

// TestPoolFaults: an expired XAPI session and a moved master are invisible
// to users.
func TestPoolFaults(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	if r := runSSH(t, b, "alice", "", nil, "list"); r.code != 0 {
		t.Fatalf("list: %+v", r)
	}
	b.Sim.ExpireSessions()
	if r := runSSH(t, b, "alice", "echo again\n", nil, "console", "web-2"); r.code != 0 || !strings.Contains(r.stdout, "again\r\n") {
		t.Fatalf("console after the session expired: %+v", r)
	}
	if err := b.Sim.MoveMaster(1); err != nil {
		t.Fatal(err)
	}
	if r := runSSH(t, b, "alice", "", nil, "list"); r.code != 0 || !strings.Contains(r.stdout, "web-2") {
		t.Fatalf("list after the master moved: %+v", r)
	}
	if n := b.Sim.Logins(); n != 3 {
		t.Errorf("%d logins, want 3 (first, after expiry, after the move)", n)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Users: []bastiontest.User{{Name: "alice", Allow: []string{"*"}}, {Name: "bob", Allow: []string{"*"}}}})
	// mallory uses alice's key under a name that is not configured.
	r := runSSH(t, b, "mallory", "", []string{"-i", b.Identity("alice")}, "list")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Errorf("unknown user: %+v", r)
	}
	// bob's key for alice.
	r = runSSH(t, b, "alice", "", []string{"-o", "IdentityFile=" + b.Identity("bob"), "-o", "IdentitiesOnly=yes"}, "list")
	_ = r
	cmd := b.SSHArgs("alice", nil, "list")
	for i := range cmd {
		if cmd[i] == b.Identity("alice") {
			cmd[i] = b.Identity("bob")
		}
	}
	out, err := exec.CommandContext(t.Context(), "ssh", cmd...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied (publickey)") {
		t.Errorf("wrong key: %v %s", err, out)
	}
	// Passwords are never offered.
	r = runSSH(t, b, "alice", "", []string{"-o", "PreferredAuthentications=password,keyboard-interactive"}, "list")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Errorf("password auth: %+v", r)
	}
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventAuthFailure && ev.User == "mallory" && ev.Reason == "unknown user" && ev.KeyFingerprint != ""
	})
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventAuthFailure && ev.User == "alice" && ev.Reason == "key not authorized for user"
	})
}

func waitFor(t *testing.T, b *testtool.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %q; have %q", s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d never listened", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkPattern checks a vncsnapshot JPEG against rfb.Pattern at the middle
// of each colour bar and grey step.
func checkPattern(t *testing.T, file string) {
	t.Helper()
	if err := rfb.CompareJPEGFile(file, 40); err != nil {
		t.Error(err)
	}
}
