package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	t.Parallel()
	xs := []float64{5, 1, 4, 2, 3}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"median odd", median(xs), 3},
		{"median even", median([]float64{4, 1, 3, 2}), 2.5},
		{"p50", percentile(xs, 50), 3},
		{"p99 of 5 is the max", percentile(xs, 99), 5},
		{"p100", percentile(xs, 100), 5},
		{"p20", percentile(xs, 20), 1},
		{"p99 of 100", percentile(seq(100), 99), 99},
		{"p99.9 of 1000", percentile(seq(1000), 99.9), 999},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) || !math.IsNaN(percentile(nil, 50)) {
		t.Error("no samples should give NaN")
	}
	if xs[0] != 5 {
		t.Error("median sorted its argument")
	}
}

func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(n - i) // descending: percentile must sort
	}
	return xs
}

func TestFigure(t *testing.T) {
	t.Parallel()
	r := figure("s", "f", "MiB/s", []float64{100, 300, 200}, []float64{100, 100, 400})
	if *r.Bastion != 200 || *r.Peer != 100 {
		t.Errorf("medians %v %v, want 200 100", *r.Bastion, *r.Peer)
	}
	// Ratios per run are 1, 3, 0.5: their median, not 200/100.
	if *r.Ratio != 1 {
		t.Errorf("ratio %v, want 1", *r.Ratio)
	}
	r = r.check("≥ 1", r.Ratio, func(x float64) bool { return x >= 1 })
	if r.Pass == nil || !*r.Pass {
		t.Error("want pass")
	}
	if r := figure("s", "f", "", []float64{1}, nil); r.Peer != nil || r.Ratio != nil || r.Pass != nil {
		t.Error("no peer should give no peer, ratio or pass")
	}
}

// TestFigureFailedRun: a run that failed (NaN) is left out of the medians
// and written to JSON as null, in its place.
func TestFigureFailedRun(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	r := figure("s", "f", "MiB/s", []float64{100, nan, 300, 200}, []float64{100, 100, nan, 400})
	if *r.Bastion != 200 || *r.Peer != 100 {
		t.Errorf("medians %v %v, want 200 100", *r.Bastion, *r.Peer)
	}
	// Ratios per run: 1, NaN, NaN, 0.5.
	if *r.Ratio != 0.75 {
		t.Errorf("ratio %v, want 0.75", *r.Ratio)
	}
	b, err := json.Marshal(r.Runs)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"bastion":[100,null,300,200],"peer":[100,100,null,400],"ratio":[1,null,null,0.5]}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	if r := figure("s", "f", "", []float64{nan, nan}, nil); r.Bastion != nil {
		t.Errorf("every run failed: median %v, want none", *r.Bastion)
	}
}

func TestFmtValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{3, "calls", "3 calls"},
		{0, "", "0"},
		{2.5, "ms", "2.5 ms"},
		{0.12345, "ms", "0.123 ms"},
		{52.84, "KiB", "52.8 KiB"},
		{1234.5, "MiB/s", "1234 MiB/s"},
		{math.NaN(), "ms", "—"},
	}
	for _, tt := range tests {
		if got := fmtValue(&tt.v, tt.unit); got != tt.want {
			t.Errorf("fmtValue(%v, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
	if got := fmtValue(nil, "ms"); got != "—" {
		t.Errorf("fmtValue(nil) = %q", got)
	}
}

func TestHostConditions(t *testing.T) {
	m := startSteal()
	for deadline := time.Now().Add(20 * time.Millisecond); time.Now().Before(deadline); {
	}
	if p := m.pct(); (p < 0 && p != -1) || p > 100 {
		t.Errorf("steal share %v%%, want 0-100 (or -1 only without /proc/stat)", p)
	}
	c := hostConditions{StealPct: map[string]float64{"keystrokes": 12.34, "latency": 3, "tunnels": -1}, Fsync: &fsyncProbe{P50: 0.4, P99: 7.2}}
	got := c.describe(phaseOrder)
	want := "CPU steal by the hypervisor: latency 3%, keystrokes 12%; fsync of a 300-byte append: p50 0.40 ms, p99 7.20 ms"
	if got != want {
		t.Errorf("describe:\n got %q\nwant %q", got, want)
	}
	p, err := probeFsync(t.TempDir(), 5)
	if err != nil || p.P50 <= 0 || p.P99 < p.P50 {
		t.Errorf("probeFsync = %+v, %v", p, err)
	}
}

// TestProcessCPU: a process tree's CPU time includes its root's, a pid
// that does not exist has none, and the machine's busy time is known.
func TestProcessCPU(t *testing.T) {
	t.Parallel()
	self, err := procCPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree := processesCPUSeconds(procTree(os.Getpid())); math.IsNaN(tree) || tree < self {
		t.Errorf("tree of this process: %v s, itself %v s", tree, self)
	}
	if tree := processesCPUSeconds(procTree(1 << 30)); !math.IsNaN(tree) {
		t.Errorf("tree of a pid that does not exist: %v, want NaN", tree)
	}
	if b := busySeconds(); math.IsNaN(b) || b <= 0 {
		t.Errorf("machine busy time %v", b)
	}
}

// TestProcessOps: a process's system calls and context switches count
// what it does, a process tree's include its root's, and a pid that does
// not exist has none.
func TestProcessOps(t *testing.T) {
	before := processOps(os.Getpid())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	buf := make([]byte, 1)
	for range 100 {
		w.Write(buf)
		r.Read(buf)
	}
	time.Sleep(20 * time.Millisecond) // a thread that sleeps blocks
	after := processOps(os.Getpid())
	if after.Reads-before.Reads < 100 || after.Writes-before.Writes < 100 {
		t.Errorf("100 reads and writes counted as %v and %v", after.Reads-before.Reads, after.Writes-before.Writes)
	}
	if after.Blocked <= before.Blocked {
		t.Errorf("voluntary context switches went from %v to %v across a sleep", before.Blocked, after.Blocked)
	}
	if tree := processOps(procTree(os.Getpid())...); tree.Reads < after.Reads {
		t.Errorf("tree of this process: %+v; the process itself: %+v", tree, after)
	}
	if tree := procTree(1 << 30); tree != nil {
		t.Errorf("tree of a pid that does not exist: %v", tree)
	}
	// A failed transfer's unknown counts are left out of the medians.
	m := medianOps([]opsUse{
		{Server: procOps{10, 20, 30, 40}},
		{Server: unknownOps},
		{Server: procOps{12, 22, 32, 42}},
	})
	if m.Server != (procOps{11, 21, 31, 41}) {
		t.Errorf("medianOps = %+v, want 11, 21, 31, 41", m.Server)
	}
}

// TestCrashLines: a crashed bastion's log is quoted from the Go runtime's
// report on, or its end when there is none.
func TestCrashLines(t *testing.T) {
	t.Parallel()
	log := "time=1 level=INFO msg=listening\nfatal error: concurrent map writes\n\ngoroutine 7 [running]:\nmain.f()\n"
	if got := crashLines(log); !strings.HasPrefix(got, "fatal error: concurrent map writes\n") || !strings.HasSuffix(got, "main.f()") {
		t.Errorf("crashLines = %q", got)
	}
	var long strings.Builder
	for i := range 100 {
		fmt.Fprintf(&long, "line %d\n", i)
	}
	got := strings.Split(crashLines(long.String()), "\n")
	if len(got) != logTailLines || got[len(got)-1] != "line 99" {
		t.Errorf("no crash report: %d lines ending %q, want the last %d", len(got), got[len(got)-1], logTailLines)
	}
}
