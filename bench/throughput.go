package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// ciphers are the ciphers measured: both paths use the same OpenSSH client
// with "-c CIPHER".
var ciphers = []string{"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"}

const (
	down = "VM→client"
	up   = "client→VM"
)

// tputPaths are the two forwards of one cipher: "ssh -L PORT:tput:5900" to
// the bastion, and "ssh -L PORT:HOST:PORT" to sshd, through which the
// harness does the TLS and CONNECT that the bastion does for its path.
type tputPaths struct {
	bastion, sshd *forward
	location      string // the throughput VM's rfb console
}

func (h *harness) startTputPaths(ctx context.Context, cipher string) (*tputPaths, error) {
	loc, err := h.sp.location(tputVM, "rfb")
	if err != nil {
		return nil, err
	}
	fb, err := h.env.startForward(ctx, bastionUser, h.bastion.port, tputVM+":5900", cipher)
	if err != nil {
		return nil, fmt.Errorf("bastion: %w", err)
	}
	fs, err := h.env.startForward(ctx, h.sshd.user, h.sshd.port, h.sp.host.Address(), cipher)
	if err != nil {
		fb.stop()
		return nil, fmt.Errorf("sshd: %w", err)
	}
	return &tputPaths{bastion: fb, sshd: fs, location: loc}, nil
}

func (p *tputPaths) stop() {
	p.bastion.stop()
	p.sshd.stop()
}

// transfer moves n bytes one way over a new connection through p and
// returns MiB/s, timed from the first byte sent to the last byte (or the
// ack) received, the CPU seconds per GiB the processes on the path used
// meanwhile, and their system calls and context switches per MiB. The
// console handshake is not timed.
func (h *harness) transfer(ctx context.Context, p *tputPaths, viaSSHD bool, dir string, n int64) (float64, cpuUse, opsUse, error) {
	f, server := p.bastion, h.bastion.cmd.Process.Pid
	if viaSSHD {
		f, server = p.sshd, h.sshd.cmd.Process.Pid
	}
	c, err := f.dial()
	if err != nil {
		return 0, cpuUse{}, opsUse{}, err
	}
	s := rawStream(c)
	if viaSSHD {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if s, err = h.sp.connectOver(ctx, c, p.location, h.sp.clientTLS(nil)); err != nil {
			return 0, cpuUse{}, opsUse{}, err
		}
	}
	defer s.Close()
	if err := h.sp.driver.Greet(s); err != nil {
		return 0, cpuUse{}, opsUse{}, err
	}
	cpu := startCPU(f.cmd.Process.Pid, server)
	start := time.Now()
	var moved int64
	if dir == down {
		moved, err = h.sp.driver.Pull(s, n)
	} else {
		moved, err = h.sp.driver.Push(s, n)
	}
	if err != nil {
		return 0, cpuUse{}, opsUse{}, fmt.Errorf("%s: %w", dir, err)
	}
	secs := time.Since(start).Seconds()
	use, ops := cpu.per(float64(moved) / (1 << 30))
	return float64(moved) / secs / (1 << 20), use, ops, nil
}

// runThroughput measures each cipher, then what a stock client (no -c)
// negotiates with each server.
func (h *harness) runThroughput(ctx context.Context) {
	const section = "Throughput of one forward"
	results := map[string]map[string]*[2][]float64{} // cipher -> direction -> [bastion, sshd] MiB/s per run
	for _, cipher := range append(ciphers, "") {
		label := cipher
		if cipher == "" {
			label = "stock client"
		}
		progress("throughput: %s", label)
		p, err := h.startTputPaths(ctx, cipher)
		if err != nil {
			h.rep.problem("throughput %s: %v", label, err)
			continue
		}
		negotiated := map[string]string{"bastion": p.bastion.cipher, "sshd": p.sshd.cipher}
		h.details["throughput "+label+" negotiated"] = negotiated
		if cipher != "" && (p.bastion.cipher != cipher || p.sshd.cipher != cipher) {
			h.rep.problem("throughput %s: negotiated %v", cipher, negotiated)
		}
		res, note := results[p.bastion.cipher], ""
		if cipher == "" && p.bastion.cipher == p.sshd.cipher && res != nil {
			// The same client, cipher and paths as a row already
			// measured: running them again would measure the same
			// thing, and the whole benchmark must fit in 5 minutes.
			note = "same cipher as its own rows above, figures not re-measured"
			progress("  both negotiate %s: %s", p.bastion.cipher, note)
		} else {
			res = h.measureThroughput(ctx, p, label)
		}
		if cipher != "" {
			results[cipher] = res
		}
		for _, dir := range []string{down, up} {
			name := fmt.Sprintf("%s, %s, %s", shortCipher(label), dir, sizeLabel(h.size))
			if cipher == "" {
				name = fmt.Sprintf("stock client (negotiates %s with the bastion, %s with sshd), %s", shortCipher(p.bastion.cipher), shortCipher(p.sshd.cipher), dir)
			}
			r := figure(section, name, "MiB/s", res[dir][0], res[dir][1])
			r.PeerName, r.Note = "sshd", note
			h.rep.add(r.check("≥ 1.0x sshd (aim 1.2x)", r.Ratio, func(x float64) bool { return x >= 1.0 }))
		}
		if h.profileDir != "" && cipher != "" {
			h.profileThroughput(ctx, p, label, map[string]float64{down: median(res[down][0]), up: median(res[up][0])})
		}
		p.stop()
	}
}

// measureThroughput runs h.runs runs over both paths, each way, and returns
// MiB/s per direction, [bastion, sshd], per run.
func (h *harness) measureThroughput(ctx context.Context, p *tputPaths, label string) map[string]*[2][]float64 {
	// A short transfer each way over each path first, not counted: the
	// first transfer of a process pays for page faults and cold caches.
	for _, viaSSHD := range []bool{false, true} {
		for _, dir := range []string{down, up} {
			if _, _, _, err := h.transfer(ctx, p, viaSSHD, dir, min(h.size, 64<<20)); err != nil {
				h.rep.problem("throughput warm-up %s (sshd=%v): %v", dir, viaSSHD, err)
			}
		}
	}

	res := map[string]*[2][]float64{down: {}, up: {}}
	cpu := map[string]*[2][]cpuUse{down: {}, up: {}}
	ops := map[string]*[2][]opsUse{down: {}, up: {}}
	for run := range h.runs {
		for _, dir := range []string{down, up} {
			// Alternate which path goes first, so that drift in the
			// machine's state favours neither.
			for i := range 2 {
				viaSSHD := (i+run)%2 == 1
				mibs, use, o, err := h.transfer(ctx, p, viaSSHD, dir, h.size)
				if err != nil {
					h.rep.problem("throughput %s (sshd=%v): %v", dir, viaSSHD, err)
					mibs = math.NaN()
					use = cpuUse{-1, -1, -1, -1}
					o = opsUse{unknownOps, unknownOps, unknownOps}
				}
				res[dir][btoi(viaSSHD)] = append(res[dir][btoi(viaSSHD)], mibs)
				cpu[dir][btoi(viaSSHD)] = append(cpu[dir][btoi(viaSSHD)], use)
				ops[dir][btoi(viaSSHD)] = append(ops[dir][btoi(viaSSHD)], o)
			}
		}
		progress("  run %d: %s %.0f/%.0f MiB/s, %s %.0f/%.0f MiB/s (bastion/sshd)", run+1,
			down, res[down][0][run], res[down][1][run], up, res[up][0][run], res[up][1][run])
		for _, dir := range []string{down, up} {
			b, s := cpu[dir][0][run], cpu[dir][1][run]
			progress("    %s CPU-s/GiB bastion/sshd path: client %.2f/%.2f, server %.2f/%.2f, harness %.2f/%.2f, machine %.2f/%.2f",
				dir, b.Client, s.Client, b.Server, s.Server, b.Harness, s.Harness, b.Machine, s.Machine)
		}
	}
	h.details["throughput "+label+" CPU seconds per GiB (median of runs)"] = map[string]map[string]cpuUse{
		down: {"bastion": medianUse(cpu[down][0]), "sshd": medianUse(cpu[down][1])},
		up:   {"bastion": medianUse(cpu[up][0]), "sshd": medianUse(cpu[up][1])},
	}
	h.details["throughput "+label+" system calls and context switches per MiB (median of runs)"] = map[string]map[string]opsUse{
		down: {"bastion": medianOps(ops[down][0]), "sshd": medianOps(ops[down][1])},
		up:   {"bastion": medianOps(ops[up][0]), "sshd": medianOps(ops[up][1])},
	}
	return res
}

// medianKnown is the median of f over us, leaving out the values that
// are unknown (-1), rounded with round; -1 if none is known.
func medianKnown[T any](us []T, f func(T) float64, round func(float64) float64) float64 {
	var xs []float64
	for _, u := range us {
		if v := f(u); v >= 0 {
			xs = append(xs, v)
		}
	}
	if m := median(xs); !math.IsNaN(m) {
		return round(m)
	}
	return -1
}

// medianUse is the median of each part of us.
func medianUse(us []cpuUse) cpuUse {
	part := func(f func(cpuUse) float64) float64 { return medianKnown(us, f, round3) }
	return cpuUse{
		Client:  part(func(u cpuUse) float64 { return u.Client }),
		Server:  part(func(u cpuUse) float64 { return u.Server }),
		Harness: part(func(u cpuUse) float64 { return u.Harness }),
		Machine: part(func(u cpuUse) float64 { return u.Machine }),
	}
}

// unknownOps stands for counts a failed transfer did not give.
var unknownOps = procOps{-1, -1, -1, -1}

// medianOps is the median of each count of each part of us.
func medianOps(us []opsUse) opsUse {
	m := func(part func(opsUse) procOps) procOps {
		count := func(f func(procOps) float64) float64 {
			return medianKnown(us, func(u opsUse) float64 { return f(part(u)) }, round1)
		}
		return procOps{
			Reads:       count(func(p procOps) float64 { return p.Reads }),
			Writes:      count(func(p procOps) float64 { return p.Writes }),
			Blocked:     count(func(p procOps) float64 { return p.Blocked }),
			Preemptions: count(func(p procOps) float64 { return p.Preemptions }),
		}
	}
	return opsUse{
		Client:  m(func(o opsUse) procOps { return o.Client }),
		Server:  m(func(o opsUse) procOps { return o.Server }),
		Harness: m(func(o opsUse) procOps { return o.Harness }),
	}
}

// profileThroughput takes a CPU profile of the bastion over one more
// transfer each way (not counted in the figures), one profile per
// direction: the two directions' paths through the bastion differ.
func (h *harness) profileThroughput(ctx context.Context, p *tputPaths, label string, mibs map[string]float64) {
	for _, dir := range []string{down, up} {
		// Seconds for the transfer at the median rate, and a margin.
		secs := int(math.Ceil(float64(h.size)/(1<<20)/mibs[dir])) + 1
		file := h.profilePath("cpu-" + shortCipher(label) + "-" + fileDir(dir) + ".pb.gz")
		ok := h.profileCPU(file, secs, "transfer "+dir, func() error {
			time.Sleep(300 * time.Millisecond)
			_, _, _, err := h.transfer(ctx, p, false, dir, h.size)
			return err
		})
		if !ok {
			return
		}
	}
}

// fileDir names a direction in a file name.
func fileDir(dir string) string {
	if dir == down {
		return "vm-to-client"
	}
	return "client-to-vm"
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sizeLabel(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// shortCipher turns "aes128-gcm@openssh.com" into "aes128-gcm".
func shortCipher(c string) string {
	for i := range len(c) {
		if c[i] == '@' {
			return c[:i]
		}
	}
	if c == "stock client" {
		return "stock"
	}
	return c
}
