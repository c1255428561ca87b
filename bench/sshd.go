package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// ensureOpenSSH installs Debian's OpenSSH server and client if either is
// missing. Only root can; anyone else is told what to install.
func ensureOpenSSH() error {
	_, errSSHD := os.Stat(sshdPath)
	_, errSSH := exec.LookPath("ssh")
	if errSSHD == nil && errSSH == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs OpenSSH: apt-get install openssh-server openssh-client")
	}
	progress("installing openssh-server and openssh-client (apt-get)")
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server", "openssh-client")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install: %w\n%s", err, out)
		}
		return nil
	}
	if install() == nil {
		return nil
	}
	if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, out)
	}
	return install()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newKey makes an ed25519 key and writes its private half, in OpenSSH's
// format, to path (mode 0600).
func newKey(path string) (gossh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, "xenbastion-bench")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return gossh.NewSignerFromKey(priv)
}

// sshEnv is what every ssh client run shares: the user key and a
// throwaway known_hosts file that pins the bastion and sshd.
type sshEnv struct {
	dir        string
	identity   string // private key file, for ssh -i
	signer     gossh.Signer
	knownHosts string

	mu    sync.Mutex
	hosts []string // known_hosts lines
}

func newSSHEnv(dir string) (*sshEnv, error) {
	e := &sshEnv{dir: dir, identity: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}
	var err error
	e.signer, err = newKey(e.identity)
	return e, err
}

// trust adds host key k for 127.0.0.1:port to known_hosts.
func (e *sshEnv) trust(port int, k gossh.PublicKey) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hosts = append(e.hosts, fmt.Sprintf("[127.0.0.1]:%d %s", port, gossh.MarshalAuthorizedKey(k)))
	return os.WriteFile(e.knownHosts, []byte(strings.Join(e.hosts, "")), 0o600)
}

// sshdProc is Debian's sshd, run as a plain foreground process with a
// throwaway configuration: the peer the bastion is measured against.
type sshdProc struct {
	cmd  *exec.Cmd
	port int
	user string
	done chan struct{}
}

// startSSHD starts sshd on a free loopback port, accepting env's key for
// the current user, and waits until it accepts connections.
func startSSHD(env *sshEnv) (*sshdProc, error) {
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := env.dir
	hostKeyPath := filepath.Join(dir, "sshd_host_ed25519_key")
	hostKey, err := newKey(hostKeyPath)
	if err != nil {
		return nil, err
	}
	ak := filepath.Join(dir, "sshd_authorized_keys")
	if err := os.WriteFile(ak, gossh.MarshalAuthorizedKey(env.signer.PublicKey()), 0o600); err != nil {
		return nil, err
	}
	// Privilege separation needs its empty chroot directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
		return nil, err
	}
	cfg := strings.Join([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKeyPath,
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AuthorizedKeysFile " + ak,
		"AllowTcpForwarding yes",
		"X11Forwarding no",
		"PrintMotd no",
		"LogLevel ERROR",
		"",
	}, "\n")
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The absolute path: sshd re-executes itself.
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s := &sshdProc{cmd: cmd, port: port, user: u.Username, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	if err := waitListening(port, s.done, 10*time.Second); err != nil {
		s.stop()
		log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
		return nil, fmt.Errorf("sshd: %w\n%s", err, log)
	}
	return s, env.trust(port, hostKey.PublicKey())
}

func (s *sshdProc) stop() { stopProcess(s.cmd, s.done, 5*time.Second) }

// stopProcess sends cmd SIGTERM and waits for done (closed once it has
// exited), killing it if grace passes first.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// waitListening waits until something accepts on 127.0.0.1:port, or exited
// is closed, or the time is up.
func waitListening(port int, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on port %d after %v", port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forward is a running "ssh -N -L" process: the OpenSSH client, the same
// binary and flags for both paths.
type forward struct {
	cmd    *exec.Cmd
	port   int    // local end of the forward
	cipher string // what was negotiated, server to client
	done   chan struct{}
}

// startForward runs ssh -N -L 127.0.0.1:PORT:dest as user on 127.0.0.1:sshPort
// with cipher (empty: the client's defaults, as a stock client) and waits
// until the forward listens.
func (e *sshEnv) startForward(ctx context.Context, user string, sshPort int, dest, cipher string) (*forward, error) {
	lport, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"-v", "-N", "-F", "/dev/null",
		"-p", strconv.Itoa(sshPort),
		"-i", e.identity, "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + e.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "Compression=no",
		"-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, dest),
	}
	if cipher != "" {
		args = append(args, "-c", cipher)
	}
	args = append(args, user+"@127.0.0.1")
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &forward{cmd: cmd, port: lport, done: make(chan struct{})}
	ready := make(chan struct{})
	var mu sync.Mutex
	var tail []string // the last lines, for errors
	go func() {
		// ssh -v prints a few lines per forwarded connection: read them
		// all, or ssh would block on a full pipe.
		sc := bufio.NewScanner(stderr)
		readyOnce := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			// The first key exchange's, not a later rekey's: the
			// caller reads f.cipher once the forward is ready.
			if c, ok := strings.CutPrefix(line, "debug1: kex: server->client cipher: "); ok && f.cipher == "" {
				f.cipher, _, _ = strings.Cut(c, " ")
			}
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
			mu.Unlock()
			// The listener is set up before the session starts.
			if strings.Contains(line, "Entering interactive session") {
				readyOnce()
			}
		}
		cmd.Wait()
		close(f.done)
	}()
	select {
	case <-ready:
		mu.Lock()
		defer mu.Unlock()
		return f, nil
	case <-f.done:
	case <-time.After(15 * time.Second):
		f.stop()
	}
	mu.Lock()
	defer mu.Unlock()
	return nil, fmt.Errorf("ssh -L %s: not ready:\n%s", dest, strings.Join(tail, "\n"))
}

func (f *forward) dial() (net.Conn, error) {
	return net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port)))
}

func (f *forward) stop() { stopProcess(f.cmd, f.done, 5*time.Second) }
