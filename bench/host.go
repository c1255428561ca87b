package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hostConditions is what the machine itself did during the run, for
// reading the figures: on a virtual machine the hypervisor may run other
// guests on the same cores ("steal"), and the audit log's fsync, which
// bounds a warm console open, depends on the host's disk.
type hostConditions struct {
	// StealPct is, per phase, the share of CPU time the hypervisor gave
	// to others while this machine's CPUs wanted it (/proc/stat steal).
	StealPct map[string]float64 `json:"steal_pct"`
	// Fsync is the latency of a 300-byte append plus fsync in the
	// scratch directory (where the bastion's audit log is), in ms.
	Fsync *fsyncProbe `json:"fsync_ms,omitempty"`
}

type fsyncProbe struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// cpuTimes is the machine-wide line of /proc/stat, in clock ticks.
type cpuTimes struct{ total, steal uint64 }

func readCPUTimes() (cpuTimes, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTimes{}, false
	}
	// cpu user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already counted in user and nice.
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, s := range fields[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, false
		}
		t.total += v
		if i == 7 {
			t.steal = v
		}
	}
	return t, true
}

// stealMeter measures the steal share of a stretch of time.
type stealMeter struct {
	start cpuTimes
	ok    bool
}

func startSteal() stealMeter {
	t, ok := readCPUTimes()
	return stealMeter{t, ok}
}

// pct is the steal share since start, in percent; -1 if unknown.
func (m stealMeter) pct() float64 {
	end, ok := readCPUTimes()
	// Some hypervisors' steal counters have been seen to go backwards.
	if !ok || !m.ok || end.total <= m.start.total || end.steal < m.start.steal {
		return -1
	}
	return 100 * float64(end.steal-m.start.steal) / float64(end.total-m.start.total)
}

// phase runs f and records the steal share during it under name.
func (h *harness) phase(name string, f func()) {
	m := startSteal()
	f()
	if h.rep.Host.StealPct == nil {
		h.rep.Host.StealPct = map[string]float64{}
	}
	h.rep.Host.StealPct[name] = round1(m.pct())
}

// probeFsync times n appends of a 300-byte line, each followed by fsync,
// in dir: what the bastion does for every console.start.
func probeFsync(dir string, n int) (*fsyncProbe, error) {
	f, err := os.OpenFile(filepath.Join(dir, "fsync-probe"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	line := []byte(strings.Repeat("x", 299) + "\n")
	ds := make([]float64, 0, n)
	for range n {
		t := time.Now()
		if _, err := f.Write(line); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		ds = append(ds, ms(time.Since(t)))
		time.Sleep(time.Millisecond)
	}
	return &fsyncProbe{P50: round3(percentile(ds, 50)), P99: round3(percentile(ds, 99))}, nil
}

// describe is the host conditions as one line for the report.
func (c hostConditions) describe(order []string) string {
	var parts []string
	for _, p := range order {
		if v, ok := c.StealPct[p]; ok && v >= 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", p, v))
		}
	}
	var s string
	if len(parts) > 0 {
		s = "CPU steal by the hypervisor: " + strings.Join(parts, ", ")
	}
	if c.Fsync != nil {
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("fsync of a 300-byte append: p50 %.2f ms, p99 %.2f ms", c.Fsync.P50, c.Fsync.P99)
	}
	return s
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// phaseOrder is the order the phases run in.
var phaseOrder = []string{"throughput", "latency", "keystrokes", "logins", "tunnels"}
