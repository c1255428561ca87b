package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/keys"
)

// bastionUser is the bastion user the harness logs in as, allowed every VM.
const bastionUser = "bench"

// bastionProc runs "xenbastion serve" as its own process, so that its RSS,
// goroutines and profiles are its own and not the harness's or the pool's.
// Every start uses the same configuration, port and host key: a restart is
// a cold start of the same bastion.
type bastionProc struct {
	bin, dir, config string
	baseConfig       string   // the configuration without its limits
	limits           []string // the limits it turns off
	unknownLimits    []string // benchLimits the bastion has no setting for
	port, debugPort  int
	hostKey          gossh.PublicKey
	env              *sshEnv
	starts           int

	cmd  *exec.Cmd
	done chan struct{}
	// stopping is set when stop shuts the current process down (each
	// process has its own, so that a restart's new one is not mistaken
	// for the old one's); an exit without it is a crash, whose message
	// waits in crash for the harness to report.
	stopping *atomic.Bool
	crash    atomic.Pointer[string]
}

// logTailLines is how much of a crashed bastion's log is reported: a Go
// panic's message and the first goroutines' stacks.
const logTailLines = 60

// watch reports an exit of cmd that stop did not ask for, with the end of
// its log (which the scratch directory's removal would lose): on stderr at
// once, and in crash for the report.
func (b *bastionProc) watch(cmd *exec.Cmd, done <-chan struct{}, stopping *atomic.Bool, logName string) {
	<-done
	if stopping.Load() {
		return
	}
	log, _ := os.ReadFile(logName)
	msg := fmt.Sprintf("the bastion exited on its own (%v); from its log:\n%s", cmd.ProcessState, crashLines(string(log)))
	progress("PROBLEM: %s", msg)
	b.crash.Store(&msg)
}

// crashRE finds the line where the Go runtime starts to report a crash.
var crashRE = regexp.MustCompile(`(?m)^(panic: |fatal error: |unexpected fault address|SIG[A-Z]+: )`)

// crashLines is the part of a log that says why the process died: from
// the Go runtime's crash report on (which goes on to every goroutine's
// stack after a fatal error), else the end.
func crashLines(log string) string {
	if loc := crashRE.FindStringIndex(log); loc != nil {
		lines := strings.Split(strings.TrimRight(log[loc[0]:], "\n"), "\n")
		return strings.Join(lines[:min(len(lines), logTailLines)], "\n")
	}
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-logTailLines):], "\n")
}

// buildBastion builds ./cmd/xenbastion of the module at root into dir.
func buildBastion(root, dir string) (string, error) {
	bin := filepath.Join(dir, "xenbastion")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/xenbastion")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/xenbastion: %w\n%s", err, out)
	}
	return bin, nil
}

// newBastion writes the bastion's configuration: one pool (sp, its
// certificate pinned), one user with env's key, the audit log and the debug
// endpoint (pprof, expvar) on loopback.
func newBastion(bin, dir string, sp *simPool, env *sshEnv) (*bastionProc, error) {
	b := &bastionProc{bin: bin, dir: dir, env: env}
	var err error
	if b.port, err = freePort(); err != nil {
		return nil, err
	}
	if b.debugPort, err = freePort(); err != nil {
		return nil, err
	}
	// Made here, so the harness knows the key to pin before the bastion runs.
	hostKeyFile := filepath.Join(dir, "bastion_host_key")
	hk, _, err := keys.LoadOrCreateHostKey(hostKeyFile)
	if err != nil {
		return nil, err
	}
	b.hostKey = hk.PublicKey()
	pwFile := filepath.Join(dir, "pool.password")
	if err := os.WriteFile(pwFile, []byte(sp.Password()+"\n"), 0o600); err != nil {
		return nil, err
	}
	q := strconv.Quote
	cfg := fmt.Sprintf(`listen: %s
host_key_file: %s
audit_log: %s
debug_listen: %s
pools:
  - name: bench
    url: %s
    username: %s
    password_file: %s
    tls:
      fingerprints: [%s]
users:
  - name: %s
    keys: [%s]
    allow: ["*"]
`, q(fmt.Sprintf("127.0.0.1:%d", b.port)), q(hostKeyFile), q(filepath.Join(dir, "audit.jsonl")),
		q(fmt.Sprintf("127.0.0.1:%d", b.debugPort)), q(sp.URL()), q(sp.Username()), q(pwFile),
		q(sp.Fingerprints()[0]), bastionUser, q(strings.TrimSpace(string(gossh.MarshalAuthorizedKey(env.signer.PublicKey())))))
	b.config = filepath.Join(dir, "bastion.yaml")
	b.baseConfig = cfg
	b.limits = slices.Clone(benchLimits)
	if err := b.writeConfig(); err != nil {
		return nil, err
	}
	return b, env.trust(b.port, b.hostKey)
}

// benchLimits turn off the limits that protect a bastion from one user or
// one address taking too much: here every connection is the same user from
// 127.0.0.1, and the load (10,000 consoles, 1,000 connections) is the
// point. A key the bastion does not know yet is left out (see start).
var benchLimits = []string{
	"max_unauthenticated",
	"max_unauthenticated_per_source",
	"max_channels_per_connection",
	"auth_failures_per_minute",
	"max_connections_per_user",
	"max_consoles_per_user",
}

func (b *bastionProc) writeConfig() error {
	cfg := b.baseConfig
	if len(b.limits) > 0 {
		cfg += "limits:\n"
		for _, k := range b.limits {
			cfg += "  " + k + ": -1\n"
		}
	}
	return os.WriteFile(b.config, []byte(cfg), 0o600)
}

// unknownKeyRE finds the key that "xenbastion serve" refused.
var unknownKeyRE = regexp.MustCompile(`unknown key "([a-z_]+)"`)

// start starts a fresh bastion process and waits until it serves SSH.
func (b *bastionProc) start() error {
	b.starts++
	logf, err := os.Create(filepath.Join(b.dir, fmt.Sprintf("bastion-%d.log", b.starts)))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(b.bin, "serve", "--config", b.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.cmd, b.done, b.stopping = cmd, make(chan struct{}), new(atomic.Bool)
	done, stopping := b.done, b.stopping
	go func() { cmd.Wait(); close(done) }()
	// It listens before it logs in to the pool and serves only after:
	// the first SSH handshake that succeeds means it is ready.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := b.dial()
		if err == nil {
			c.Close()
			go b.watch(cmd, done, stopping, logf.Name())
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logf.Name())
			if m := unknownKeyRE.FindSubmatch(log); m != nil {
				// An older bastion: run it without that limit.
				key := string(m[1])
				if key == "limits" {
					b.limits = nil
				}
				if i := slices.Index(b.limits, key); i >= 0 || key == "limits" {
					if i >= 0 {
						b.limits = slices.Delete(b.limits, i, i+1)
					}
					progress("the bastion has no %q setting; running without it", key)
					b.unknownLimits = append(b.unknownLimits, key)
					if err := b.writeConfig(); err != nil {
						return err
					}
					return b.start()
				}
			}
			return fmt.Errorf("bastion exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			b.stop()
			return fmt.Errorf("bastion not ready: %v; see %s", err, logf.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the bastion down (SIGTERM: its consoles end and are audited),
// and kills it if that takes too long.
func (b *bastionProc) stop() {
	if b.cmd == nil {
		return
	}
	b.stopping.Store(true)
	stopProcess(b.cmd, b.done, 15*time.Second)
	b.cmd = nil
}

// dialSlots bounds the SSH handshakes in flight: a bastion caps
// unauthenticated connections per source address, and every connection
// here comes from 127.0.0.1.
var dialSlots = make(chan struct{}, 8)

// dial opens an SSH connection to the bastion as bastionUser with the
// x/crypto client (its default ciphers: aes128-gcm first).
func (b *bastionProc) dial() (*gossh.Client, error) {
	dialSlots <- struct{}{}
	defer func() { <-dialSlots }()
	return gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), &gossh.ClientConfig{
		User:            bastionUser,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(b.env.signer)},
		HostKeyCallback: gossh.FixedHostKey(b.hostKey),
		Timeout:         10 * time.Second,
	})
}

// rss returns the bastion's resident set size in bytes.
func (b *bastionProc) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", b.cmd.Process.Pid)
}

// cpuSeconds returns the CPU time (user and system) the bastion has used.
func (b *bastionProc) cpuSeconds() (float64, error) {
	return procCPUSeconds(b.cmd.Process.Pid)
}

// procCPUSeconds is the user and system CPU time process pid has used.
func procCPUSeconds(pid int) (float64, error) {
	_, cpu, err := procStat(pid)
	return cpu, err
}

// clockTicks is USER_HZ on Linux, the unit of /proc's CPU times.
const clockTicks = 100

// procStat reads /proc/PID/stat: the parent's pid, and the user and system
// CPU time in seconds.
func procStat(pid int) (ppid int, cpu float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses: state is
	// the first, ppid the 2nd, utime the 12th and stime the 13th, in
	// clock ticks.
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, err0 := strconv.Atoi(f[1])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return ppid, float64(ut+st) / clockTicks, nil
}

// debugVars is the part of the bastion's /debug/vars the report uses.
type debugVars struct {
	Goroutines int `json:"goroutines"`
	Memstats   struct {
		HeapInuse    uint64 `json:"HeapInuse"`
		StackInuse   uint64 `json:"StackInuse"`
		Sys          uint64 `json:"Sys"`
		NumGC        uint32 `json:"NumGC"`
		PauseTotalNs uint64 `json:"PauseTotalNs"`
		HeapObjects  uint64 `json:"HeapObjects"`
	} `json:"memstats"`
}

func (b *bastionProc) vars() (debugVars, error) {
	var v debugVars
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/vars", b.debugPort))
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// fetchProfile saves /debug/pprof/PATH (e.g. "profile?seconds=5", "heap")
// to file.
func (b *bastionProc) fetchProfile(path, file string) error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", b.debugPort, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("pprof %s: %s: %s", path, resp.Status, msg)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// openForward opens a direct-tcpip channel to vm:5900, as "ssh -L" does.
func openForward(c *gossh.Client, vm string) (net.Conn, error) {
	return c.Dial("tcp", net.JoinHostPort(vm, "5900"))
}
