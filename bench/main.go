// Command bench measures xenbastion against OpenSSH and against direct
// console connections: forward throughput, console open latency, XAPI
// calls and logins per open, the cost of idle tunnels, and keystroke
// latency. See bench/README.md.
//
//	go run ./bench                 # the full run, under 5 minutes
//	go run ./bench -quick          # a reduced run for development
//
// It prints a Markdown table on stdout (progress goes to stderr) and writes
// the same figures, with every run's values, as JSON.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// harness is one benchmark run: the processes it started and the sizes.
type harness struct {
	root       string // the module's directory
	dir        string // scratch: keys, configs, logs, audit log
	profileDir string // where profiles go; "" for none

	sp      *simPool
	env     *sshEnv
	sshd    *sshdProc
	bastion *bastionProc

	runs         int
	size         int64 // bytes each way per throughput run
	nVMs         int
	coldPerRun   int
	warmPerRun   int
	burst        int
	tunnelLevels []int
	sessions     int
	typeWindow   time.Duration

	rep     *report
	details map[string]any
}

func main() {
	quick := flag.Bool("quick", false, "a reduced run for development: smaller sizes, 3 runs")
	jsonPath := flag.String("json", "", "where to write the JSON results (default bench/results.json)")
	profile := flag.String("profile", "", "directory for bastion CPU and heap profiles and their `go tool pprof -top` (off if empty)")
	only := flag.String("only", "", "comma-separated phases to run: throughput,latency,keystrokes,logins,tunnels (default all)")
	backend := flag.String("backend", "auto", "rfb console back end: bench or auto (xapitest.BenchBackend), rfb (the test-pattern VNC server)")
	keep := flag.Bool("keep", false, "keep the scratch directory (logs, configs, audit log)")
	runs := flag.Int("runs", 0, "runs per figure (default 5, 3 with -quick)")
	sessions := flag.Int("sessions", 0, "keystroke sessions per path (default 1000, 100 with -quick)")
	selfProfile := flag.String("self-profile", "", "write a CPU profile of the harness itself to this file (to see what the harness costs)")
	flag.Parse()
	if *selfProfile != "" {
		f, err := os.Create(*selfProfile)
		if err != nil {
			os.Exit(fail(err))
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	code := run(*quick, *jsonPath, *profile, *only, *backend, *keep, *runs, *sessions)
	pprof.StopCPUProfile()
	os.Exit(code)
}

func run(quick bool, jsonPath, profileDir, only, backend string, keep bool, runs, sessions int) int {
	started := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The harness holds the pool's end of every console, thousands of
	// them: collecting less often leaves more of the two cores to the
	// processes measured. Memory is not short.
	debug.SetGCPercent(400)
	// Thousands of sockets each in this process (the pool's ends) and in
	// the bastion, which inherits the limit.
	if err := raiseFileLimit(1 << 17); err != nil {
		progress("warning: raising the open file limit: %v", err)
	}
	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	if jsonPath == "" {
		jsonPath = filepath.Join(root, "bench", "results.json")
	}
	h := &harness{
		root: root, profileDir: profileDir,
		runs: 5, size: 1 << 30, nVMs: 2000, coldPerRun: 100, warmPerRun: 100, burst: 500,
		tunnelLevels: []int{1000, 5000, 10000}, sessions: 1000, typeWindow: 2500 * time.Millisecond,
		details: map[string]any{},
	}
	if quick {
		h.runs, h.size, h.nVMs, h.coldPerRun, h.warmPerRun, h.burst = 3, 64<<20, 400, 20, 20, 100
		h.tunnelLevels, h.sessions, h.typeWindow = []int{100, 500, 1000}, 100, time.Second
	}
	if runs > 0 {
		h.runs = runs
	}
	if sessions > 0 {
		h.sessions = min(sessions, h.nVMs/2)
	}
	h.rep = &report{Started: started, Quick: quick, Runs: h.runs, Details: h.details, Machine: machineInfo()}
	phases := map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		if p = strings.TrimSpace(p); p != "" {
			phases[p] = true
		}
	}
	want := func(p string) bool { return len(phases) == 0 || phases[p] }

	if h.dir, err = os.MkdirTemp("", "xenbastion-bench-"); err != nil {
		return fail(err)
	}
	if keep {
		progress("scratch directory: %s", h.dir)
	} else {
		defer os.RemoveAll(h.dir)
	}
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return fail(err)
		}
	}
	defer h.close()
	if err := h.setUp(backend, want("throughput")); err != nil {
		return fail(err)
	}
	h.rep.Backend = h.sp.driver.Name()
	h.details["bastion limits turned off"] = h.bastion.limits
	if u := h.bastion.unknownLimits; len(u) > 0 {
		// Those limits stay at the bastion's defaults: figures that need
		// more (channels per connection, ...) show the refusals.
		h.details["bastion limits it has no setting for"] = u
	}

	// The bastion process that serves the first phases is started once:
	// its first open of each VM is a cold one.
	if want("throughput") {
		h.phase("throughput", func() { h.runThroughput(ctx) })
	}
	if want("latency") && ctx.Err() == nil {
		// A warm open waits for console.start's fsync: time this disk's.
		if p, err := probeFsync(h.dir, 300); err != nil {
			h.rep.problem("fsync probe: %v", err)
		} else {
			h.rep.Host.Fsync = p
		}
		h.phase("latency", func() { h.runLatency(ctx) })
	}
	if want("keystrokes") && ctx.Err() == nil {
		h.phase("keystrokes", func() { h.runKeystrokes(ctx) })
	}
	// These start a fresh bastion process for each run.
	if want("logins") && ctx.Err() == nil {
		h.phase("logins", func() { h.runLogins(ctx) })
	}
	if want("tunnels") && ctx.Err() == nil {
		h.phase("tunnels", h.runTunnels)
	}
	if ctx.Err() != nil {
		h.rep.problem("interrupted")
	}

	h.rep.Seconds = time.Since(started).Seconds()
	h.rep.writeMarkdown(os.Stdout)
	if err := h.rep.writeJSON(jsonPath); err != nil {
		return fail(err)
	}
	fmt.Printf("\nJSON: %s (%.0f s)\n", jsonPath, h.rep.Seconds)
	if len(h.rep.Problems) > 0 {
		return 1
	}
	return 0
}

// setUp starts the pool, builds and starts the bastion, and (for the
// throughput phase) installs and starts sshd.
func (h *harness) setUp(backend string, needSSHD bool) error {
	progress("setting up: pool of %d VMs, bastion build, sshd", h.nVMs+1)
	var err error
	if h.sp, err = newSimPool(h.nVMs, backend); err != nil {
		return err
	}
	if h.env, err = newSSHEnv(h.dir); err != nil {
		return err
	}
	bin, err := buildBastion(h.root, h.dir)
	if err != nil {
		return err
	}
	if h.bastion, err = newBastion(bin, h.dir, h.sp, h.env); err != nil {
		return err
	}
	if needSSHD {
		if err := ensureOpenSSH(); err != nil {
			return err
		}
		if h.sshd, err = startSSHD(h.env); err != nil {
			return err
		}
	}
	return h.bastion.start()
}

func (h *harness) restartBastion() error {
	h.bastion.stop()
	return h.bastion.start()
}

func (h *harness) close() {
	if h.bastion != nil {
		h.bastion.stop()
	}
	if h.sshd != nil {
		h.sshd.stop()
	}
	if h.sp != nil {
		h.sp.Close()
	}
}

func (h *harness) profilePath(name string) string {
	return filepath.Join(h.profileDir, name)
}

// profileCPU takes a CPU profile of the bastion over secs seconds while
// work runs (what names it in a problem), then writes its top next to
// it. It returns false if no profile was taken.
func (h *harness) profileCPU(file string, secs int, what string, work func() error) bool {
	errc := make(chan error, 1)
	go func() { errc <- h.bastion.fetchProfile(fmt.Sprintf("profile?seconds=%d", secs), file) }()
	if err := work(); err != nil {
		h.rep.problem("profiled %s: %v", what, err)
	}
	if err := <-errc; err != nil {
		h.rep.problem("cpu profile: %v", err)
		return false
	}
	h.pprofTop(file, "")
	return true
}

// pprofTop writes `go tool pprof -top` of a profile next to it, by flat
// and by cumulative cost, and keeps the files' names for the report.
func (h *harness) pprofTop(file, sampleIndex string) {
	var all []byte
	for _, order := range []string{"-flat", "-cum"} {
		args := []string{"tool", "pprof", "-top", order, "-nodecount=40"}
		if sampleIndex != "" {
			args = append(args, "-sample_index="+sampleIndex)
		}
		out, err := exec.Command("go", append(args, h.bastion.bin, file)...).CombinedOutput()
		if err != nil {
			h.rep.problem("go tool pprof %s: %v\n%s", file, err, out)
			return
		}
		all = append(append(all, "# go tool pprof "+strings.Join(args[2:], " ")+"\n"...), out...)
		all = append(all, '\n')
	}
	txt := strings.TrimSuffix(file, ".pb.gz") + ".top.txt"
	if err := os.WriteFile(txt, all, 0o644); err != nil {
		h.rep.problem("%v", err)
	}
	h.rep.Profiles = append(h.rep.Profiles, file, txt)
	progress("profile: %s", txt)
}

// raiseFileLimit raises RLIMIT_NOFILE to n, the hard limit too when
// permitted. Setting it explicitly also makes child processes inherit it
// (Go otherwise restores the original soft limit for them).
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return nil
	}
	// Not allowed to raise the hard limit: go as far as it allows.
	lim.Cur = min(n, lim.Max)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the benchmark from the xenbastion module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m.OpenSSH = strings.TrimSpace(strings.Split(string(out), ",")[0])
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.BastionRev = strings.TrimSpace(string(out))
	}
	return m
}

// progress reports what the benchmark is doing, on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func fail(err error) int {
	progress("error: %v", err)
	return 1
}
