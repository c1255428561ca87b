package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// keyInterval is how often each session types a key.
const keyInterval = 100 * time.Millisecond

// echoSession is one vt100 console session whose shell echoes what is
// typed. Typing is open loop, like a person's: a key goes every
// keyInterval whether or not the last echo is back. The reader matches
// echoes to keys in order.
type echoSession struct {
	w     io.Writer
	r     io.Reader
	close func()

	sent chan time.Time // when each key not yet echoed was typed

	mu      sync.Mutex // guards samples and stray
	samples []float64  // round trips in ms, since the last collect
	stray   int        // bytes that matched no key
}

func newEchoSession(w io.Writer, r io.Reader, close func()) *echoSession {
	s := &echoSession{w: w, r: r, close: close, sent: make(chan time.Time, 4096)}
	go s.read()
	return s
}

func (s *echoSession) read() {
	buf := make([]byte, 512)
	for {
		n, err := s.r.Read(buf)
		now := time.Now()
		s.mu.Lock()
		for range n {
			select {
			case t := <-s.sent:
				s.samples = append(s.samples, ms(now.Sub(t)))
			default:
				s.stray++
			}
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// type1 types one key.
func (s *echoSession) type1() error {
	s.sent <- time.Now() // before the write: the echo may beat the return
	_, err := s.w.Write([]byte{'a'})
	return err
}

// collect returns the samples since the last collect and how many keys
// are still unanswered (dropped: they would pair with later echoes).
func (s *echoSession) collect() (samples []float64, lost int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	samples, s.samples = s.samples, nil
	for {
		select {
		case <-s.sent:
			lost++
		default:
			return samples, lost
		}
	}
}

// typeFor has every session type a key every keyInterval for d, each
// starting at a random point of the interval, then waits for the last
// echoes and returns the round trips in ms and the keys never echoed.
func typeFor(sessions []*echoSession, d time.Duration) ([]float64, int, error) {
	var wg sync.WaitGroup
	var werr atomic.Value
	start := time.Now()
	for _, s := range sessions {
		wg.Go(func() {
			t := start.Add(rand.N(keyInterval))
			for end := start.Add(d); t.Before(end); t = t.Add(keyInterval) {
				time.Sleep(time.Until(t))
				if err := s.type1(); err != nil {
					werr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // the last echoes
	var all []float64
	lost := 0
	for _, s := range sessions {
		x, l := s.collect()
		all = append(all, x...)
		lost += l
	}
	err, _ := werr.Load().(error)
	return all, lost, err
}

// openEchoSessions opens n vt100 sessions with open, 32 at a time.
func openEchoSessions(n int, open func(i int) (*echoSession, error)) ([]*echoSession, error) {
	sessions := make([]*echoSession, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				sessions[i], errs[i] = open(i)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeEchoSessions(sessions)
		return nil, err
	}
	return sessions, nil
}

func closeEchoSessions(sessions []*echoSession) {
	for _, s := range sessions {
		if s != nil {
			s.close()
		}
	}
}

// bastionEchoSession is "ssh -t bastion console VM" with the x/crypto
// client: its own SSH connection, a PTY, and the console command.
func (h *harness) bastionEchoSession(vm string) (*echoSession, error) {
	c, err := h.bastion.dial()
	if err != nil {
		return nil, err
	}
	sess, err := c.NewSession()
	if err != nil {
		c.Close()
		return nil, err
	}
	fail := func(err error) (*echoSession, error) {
		c.Close()
		return nil, fmt.Errorf("console %s: %w", vm, err)
	}
	if err := sess.RequestPty("vt100", 24, 80, gossh.TerminalModes{}); err != nil {
		return fail(err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := sess.Start("console " + vm); err != nil {
		return fail(err)
	}
	return newEchoSession(w, r, func() { c.Close() }), nil
}

// directEchoSession is TLS and CONNECT to the VM's vt100 console.
func (h *harness) directEchoSession(ctx context.Context, vm string, cfg *tls.Config) (*echoSession, error) {
	loc, err := h.sp.location(vm, "vt100")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := h.sp.dialDirect(ctx, loc, cfg)
	if err != nil {
		return nil, err
	}
	return newEchoSession(s, s, func() { s.Close() }), nil
}

// runKeystrokes measures keystroke round trips with h.sessions vt100
// sessions typing at once, through the bastion (one SSH connection each)
// and directly, each path in its own window of every run. The two paths
// use different VMs: a vt100 console's output goes to all its clients.
func (h *harness) runKeystrokes(ctx context.Context) {
	const section = "Keystroke echo round trip"
	n := h.sessions
	progress("keystrokes: %d sessions per path, a key every %v, %d runs of %v per path", n, keyInterval, h.runs, h.typeWindow)
	direct, err := openEchoSessions(n, func(i int) (*echoSession, error) {
		return h.directEchoSession(ctx, vmName(n+i), h.sp.clientTLS(tls.NewLRUClientSessionCache(1)))
	})
	if err != nil {
		h.rep.problem("keystrokes: direct sessions: %v", err)
		return
	}
	defer closeEchoSessions(direct)
	viaBastion, err := openEchoSessions(n, func(i int) (*echoSession, error) { return h.bastionEchoSession(vmName(i)) })
	if err != nil {
		h.rep.problem("keystrokes: bastion sessions: %v", err)
		return
	}
	defer closeEchoSessions(viaBastion)
	// One key each, not counted: every relay is up before timing.
	for _, ss := range [][]*echoSession{direct, viaBastion} {
		if _, _, err := typeFor(ss, keyInterval); err != nil {
			h.rep.problem("keystrokes: warm-up: %v", err)
			return
		}
	}

	if h.profileDir != "" {
		h.profileKeystrokes(viaBastion)
	}

	var b50, b99, d50, d99, added, lost []float64
	var quiet []float64      // added, in the runs with a quiet host (quietSteal)
	var allB, allD []float64 // every run's samples
	for run := range h.runs {
		var d, b typingWindow
		var bastionUse map[string]any // what the bastion did in its window
		typeDirect := func() (err error) {
			if d, err = h.timeTyping(direct); err != nil {
				return fmt.Errorf("direct: %w", err)
			}
			return nil
		}
		typeBastion := func() (err error) {
			v0, _ := h.bastion.vars()
			cpu0, _ := h.bastion.cpuSeconds()
			b, err = h.timeTyping(viaBastion)
			v1, _ := h.bastion.vars()
			cpu1, _ := h.bastion.cpuSeconds()
			bastionUse = map[string]any{
				"cpu_seconds": cpu1 - cpu0, "gcs": v1.Memstats.NumGC - v0.Memstats.NumGC,
				"gc_pause_ms":    float64(v1.Memstats.PauseTotalNs-v0.Memstats.PauseTotalNs) / 1e6,
				"heap_inuse_mib": float64(v1.Memstats.HeapInuse) / (1 << 20), "goroutines": v1.Goroutines,
			}
			if err != nil {
				return fmt.Errorf("bastion: %w", err)
			}
			return nil
		}
		// Alternate which path types first, so that drift in the
		// machine's state favours neither.
		first, second := typeDirect, typeBastion
		if run%2 == 1 {
			first, second = typeBastion, typeDirect
		}
		if err := errors.Join(first(), second()); err != nil {
			h.rep.problem("keystrokes: %v", err)
			return
		}
		// What the bastion did in its window: the tail is worth reading
		// next to its CPU use and garbage collections.
		h.details[fmt.Sprintf("keystrokes run %d", run+1)] = map[string]any{
			"bastion": tail(b.samples), "direct": tail(d.samples),
			"steal_pct": map[string]float64{"bastion_window": b.steal, "direct_window": d.steal},
			// The harness is the SSH client and the pool: its CPU competes
			// with the bastion's for the same cores.
			"harness_cpu_seconds": map[string]float64{"bastion_window": b.harnessCPU, "direct_window": d.harnessCPU},
			// A collection in the harness would stall both paths' clients.
			"harness_gcs":    map[string]uint32{"bastion_window": b.harnessGCs, "direct_window": d.harnessGCs},
			"bastion_window": bastionUse,
		}
		bs, ds := b.samples, d.samples
		b50, b99 = append(b50, percentile(bs, 50)), append(b99, percentile(bs, 99))
		d50, d99 = append(d50, percentile(ds, 50)), append(d99, percentile(ds, 99))
		added = append(added, b99[run]-d99[run])
		if b.steal >= 0 && d.steal >= 0 && max(b.steal, d.steal) < quietSteal {
			quiet = append(quiet, added[run])
		}
		allB, allD = append(allB, bs...), append(allD, ds...)
		lost = append(lost, float64(b.lost))
		progress("  run %d: p50 %.2f/%.2f ms, p99 %.2f/%.2f ms (bastion/direct), %d+%d samples, %d+%d lost, steal %.0f%%/%.0f%%",
			run+1, b50[run], d50[run], b99[run], d99[run], len(bs), len(ds), b.lost, d.lost, b.steal, d.steal)
	}
	p50 := figure(section, fmt.Sprintf("p50, %d sessions", n), "ms", b50, d50)
	p99 := figure(section, fmt.Sprintf("p99, %d sessions", n), "ms", b99, d99)
	p50.PeerName, p99.PeerName = "direct", "direct"
	h.rep.add(p50, p99,
		figure(section, "p99 added by the bastion (bastion p99 − direct p99)", "ms", added, nil).
			check("≤ 2 ms", medianPtr(added), func(x float64) bool { return x <= 2 }),
		figure(section, "p99 added, all runs' samples pooled", "ms", []float64{percentile(allB, 99) - percentile(allD, 99)}, nil).
			check("≤ 2 ms", ptr(percentile(allB, 99)-percentile(allD, 99)), func(x float64) bool { return x <= 2 }),
		// No target: picking runs by the host's state cannot decide one.
		// It says what the bastion adds when the host leaves the cores
		// alone, next to the rows above, which the host's steal moves.
		figure(section, fmt.Sprintf("p99 added, runs with under %.0f%% CPU steal in both windows (%d of %d)", quietSteal, len(quiet), len(added)), "ms", quiet, nil),
		figure(section, "keys never echoed via the bastion", "", lost, nil).
			check("0", medianPtr(lost), func(x float64) bool { return x == 0 }),
	)
}

// typingWindow is what one path's typing window of a keystroke run gave.
type typingWindow struct {
	samples    []float64 // round trips in ms
	lost       int       // keys never echoed
	steal      float64   // CPU steal in the window, in percent (-1 if unknown)
	harnessCPU float64   // CPU seconds the harness used in the window
	harnessGCs uint32    // the harness's garbage collections in the window
}

// timeTyping has sessions type for h.typeWindow (typeFor) and says what
// the window gave.
func (h *harness) timeTyping(sessions []*echoSession) (typingWindow, error) {
	// The harness (the pool and every client) holds a large heap: a
	// collection of its own in a window stalls that path's clients for
	// 100 ms or more on two cores. Collect now, outside the window, so that
	// the next collection is the whole GOGC growth away (testing.B does
	// the same before each benchmark).
	runtime.GC()
	steal := startSteal()
	cpu0, _ := procCPUSeconds(os.Getpid())
	gcs0 := numGC()
	samples, lost, err := typeFor(sessions, h.typeWindow)
	cpu1, _ := procCPUSeconds(os.Getpid())
	return typingWindow{samples: samples, lost: lost, steal: round1(steal.pct()), harnessCPU: round3(cpu1 - cpu0),
		harnessGCs: numGC() - gcs0}, err
}

// numGC is how many garbage collections this process has finished
// (runtime/metrics, which, unlike ReadMemStats, does not stop the world).
func numGC() uint32 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return uint32(s[0].Value.Uint64())
}

// quietSteal is the CPU steal, in percent, under which a keystroke run's
// windows count as quiet for the report's last p99 row: 2-5% steal has
// been seen to double the bastion's p99 (bench/README.md).
const quietSteal = 1.0

// tailStats describes the slow end of a latency distribution, in ms.
type tailStats struct {
	Samples   int     `json:"samples"`
	P90       float64 `json:"p90"`
	P99       float64 `json:"p99"`
	P999      float64 `json:"p99_9"`
	Max       float64 `json:"max"`
	Over5ms   int     `json:"over_5ms"`
	Over20ms  int     `json:"over_20ms"`
	Over100ms int     `json:"over_100ms"`
}

func tail(xs []float64) tailStats {
	t := tailStats{Samples: len(xs), P90: percentile(xs, 90), P99: percentile(xs, 99), P999: percentile(xs, 99.9), Max: percentile(xs, 100)}
	for _, x := range xs {
		if x > 5 {
			t.Over5ms++
		}
		if x > 20 {
			t.Over20ms++
		}
		if x > 100 {
			t.Over100ms++
		}
	}
	return t
}

// profileKeystrokes takes a CPU profile of the bastion over one more
// typing window through it (not counted in the figures).
func (h *harness) profileKeystrokes(sessions []*echoSession) {
	file := h.profilePath("cpu-keystrokes.pb.gz")
	secs := max(1, int(h.typeWindow.Round(time.Second)/time.Second))
	h.profileCPU(file, secs, "keystrokes", func() error {
		_, _, err := typeFor(sessions, time.Duration(secs)*time.Second)
		return err
	})
}
