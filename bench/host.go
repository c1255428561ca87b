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
type cpuTimes struct {
	total, steal uint64
	busy         uint64 // all but idle, iowait and steal
}

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
		switch i {
		case 7:
			t.steal = v
		case 3, 4: // idle, iowait
		default:
			t.busy += v
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
	if h.bastion != nil {
		if msg := h.bastion.crash.Swap(nil); msg != nil {
			h.rep.problem("%s: %s", name, *msg)
		}
	}
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

// busySeconds is the CPU time the whole machine spent running anything,
// in seconds; NaN if unknown.
func busySeconds() float64 {
	t, ok := readCPUTimes()
	if !ok {
		return math.NaN()
	}
	return float64(t.busy) / clockTicks
}

// procTree is process root and all its descendants (sshd forks a process
// per connection, and that one another); nil if root is gone.
func procTree(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStat(pid); err == nil {
			parent[pid] = ppid
		}
	}
	if _, ok := parent[root]; !ok {
		return nil
	}
	var tree []int
	for pid := range parent {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				tree = append(tree, pid)
				break
			}
		}
	}
	return tree
}

// processesCPUSeconds is the CPU time of processes pids (a procTree), in
// seconds; NaN if there are none (the tree's root is gone).
func processesCPUSeconds(pids []int) float64 {
	if pids == nil {
		return math.NaN()
	}
	var sum float64
	for _, pid := range pids {
		if _, s, err := procStat(pid); err == nil {
			sum += s
		}
	}
	return sum
}

// procOps is what processes asked of the kernel: read(2)- and
// write(2)-family system calls (/proc/PID/io syscr, syscw; a socket's
// read and write count, recvmsg and sendmsg do not), and how often their
// threads blocked (voluntary context switches: waited for data, room or
// a lock) or were preempted (involuntary).
type procOps struct {
	Reads       float64 `json:"read_calls"`
	Writes      float64 `json:"write_calls"`
	Blocked     float64 `json:"voluntary_switches"`
	Preemptions float64 `json:"involuntary_switches"`
}

// processOps is procOps summed over processes pids and all their threads.
func processOps(pids ...int) procOps {
	var o procOps
	for _, pid := range pids {
		for k, v := range procFields(fmt.Sprintf("/proc/%d/io", pid)) {
			switch k {
			case "syscr":
				o.Reads += v
			case "syscw":
				o.Writes += v
			}
		}
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			for k, v := range procFields(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name())) {
				switch k {
				case "voluntary_ctxt_switches":
					o.Blocked += v
				case "nonvoluntary_ctxt_switches":
					o.Preemptions += v
				}
			}
		}
	}
	return o
}

// procFields reads the "name: number" lines of a /proc file; nil if it
// cannot be read (the process has gone).
func procFields(file string) map[string]float64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	m := map[string]float64{}
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if x, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			m[k] = x
		}
	}
	return m
}

// cpuUse is the CPU time the processes on a forward's path used, by part.
type cpuUse struct {
	Client  float64 `json:"ssh_client"` // the OpenSSH client
	Server  float64 `json:"server"`     // the bastion, or sshd and its children
	Harness float64 `json:"harness"`    // this process: the pool, and the TLS client on the sshd path
	Machine float64 `json:"machine"`    // everything the machine ran
}

// cpuMeter measures cpuUse and opsUse over a stretch of time.
type cpuMeter struct {
	client, server int
	start          cpuUse
	startOps       opsUse
}

// opsUse is what the processes on a forward's path asked of the kernel,
// by part (as cpuUse).
type opsUse struct {
	Client  procOps `json:"ssh_client"`
	Server  procOps `json:"server"`
	Harness procOps `json:"harness"`
}

func (m *cpuMeter) read() (cpuUse, opsUse) {
	h, err := procCPUSeconds(os.Getpid())
	if err != nil {
		h = math.NaN()
	}
	c, err := procCPUSeconds(m.client)
	if err != nil {
		c = math.NaN()
	}
	// The server is a tree (sshd and what it forks); the client and the
	// harness are single processes: the harness's descendants are the
	// bastion, sshd and the ssh clients.
	server := procTree(m.server)
	use := cpuUse{Client: c, Server: processesCPUSeconds(server), Harness: h, Machine: busySeconds()}
	ops := opsUse{Client: processOps(m.client), Server: processOps(server...), Harness: processOps(os.Getpid())}
	return use, ops
}

func startCPU(client, server int) *cpuMeter {
	m := &cpuMeter{client: client, server: server}
	m.start, m.startOps = m.read()
	return m
}

// per is the CPU time used since the start, per unit of work (GiB), and
// the system calls and context switches per MiB; -1 where unknown (JSON
// has no NaN).
func (m *cpuMeter) per(gib float64) (cpuUse, opsUse) {
	e, eo := m.read()
	f := func(a, b float64) float64 {
		if v := (b - a) / gib; gib > 0 && !math.IsNaN(v) {
			return round3(v)
		}
		return -1
	}
	mib := gib * 1024
	o := func(a, b procOps) procOps {
		g := func(x, y float64) float64 {
			if mib <= 0 || y < x {
				return -1
			}
			return round1((y - x) / mib)
		}
		return procOps{g(a.Reads, b.Reads), g(a.Writes, b.Writes), g(a.Blocked, b.Blocked), g(a.Preemptions, b.Preemptions)}
	}
	return cpuUse{f(m.start.Client, e.Client), f(m.start.Server, e.Server), f(m.start.Harness, e.Harness), f(m.start.Machine, e.Machine)},
		opsUse{o(m.startOps.Client, eo.Client), o(m.startOps.Server, eo.Server), o(m.startOps.Harness, eo.Harness)}
}
