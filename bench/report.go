package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// row is one figure of the report: the bastion's value and the peer's
// (OpenSSH, or a direct connection), each the median of the runs, and the
// median of the per-run ratios bastion/peer (each run measures both).
type row struct {
	Section string `json:"section"`
	Figure  string `json:"figure"`
	Unit    string `json:"unit"`
	// Bastion and Peer are medians over runs; nil when not measured.
	Bastion *float64 `json:"bastion"`
	Peer    *float64 `json:"peer"`
	// PeerName says what the peer is ("OpenSSH sshd", "direct").
	PeerName string   `json:"peer_name,omitempty"`
	Ratio    *float64 `json:"ratio"`
	Target   string   `json:"target,omitempty"`
	// Pass is nil for figures without a target.
	Pass *bool   `json:"pass"`
	Runs runSets `json:"runs"`
	Note string  `json:"note,omitempty"`
}

// runSets are the per-run values behind a row.
type runSets struct {
	Bastion runValues `json:"bastion,omitempty"`
	Peer    runValues `json:"peer,omitempty"`
	Ratio   runValues `json:"ratio,omitempty"`
}

// runValues are per-run values in run order; a run that failed is NaN,
// written to JSON as null (JSON has no NaN).
type runValues []float64

func (v runValues) MarshalJSON() ([]byte, error) {
	out := make([]*float64, len(v))
	for i, x := range v {
		if !math.IsNaN(x) {
			out[i] = &x
		}
	}
	return json.Marshal(out)
}

// figures builds a row from per-run values; peer and ratio may be nil.
func figure(section, name, unit string, bastion, peer []float64) row {
	r := row{Section: section, Figure: name, Unit: unit, Runs: runSets{Bastion: bastion, Peer: peer}}
	r.Bastion = medianPtr(bastion)
	r.Peer = medianPtr(peer)
	if len(peer) == len(bastion) && len(peer) > 0 {
		for i := range bastion {
			r.Runs.Ratio = append(r.Runs.Ratio, bastion[i]/peer[i])
		}
		r.Ratio = medianPtr(r.Runs.Ratio)
	}
	return r
}

// check sets the target text and whether value passes ok.
func (r row) check(target string, value *float64, ok func(float64) bool) row {
	r.Target = target
	if value != nil {
		p := ok(*value)
		r.Pass = &p
	}
	return r
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// medianPtr is the median of the runs that did not fail (NaN), or nil if
// none did.
func medianPtr(xs []float64) *float64 {
	xs = slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
	if len(xs) == 0 {
		return nil
	}
	m := median(xs)
	return &m
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// Less a hair, so that float error (99.9/100*1000 = 999.0000000000001)
	// does not push the rank up one.
	i := int(math.Ceil(p/100*float64(len(s))-1e-9)) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ptr[T any](v T) *T { return &v }

// report is the whole result, as written to JSON.
type report struct {
	Started  time.Time      `json:"started"`
	Seconds  float64        `json:"seconds"`
	Quick    bool           `json:"quick"`
	Runs     int            `json:"runs"`
	Machine  machine        `json:"machine"`
	Backend  string         `json:"console_backend"`
	Host     hostConditions `json:"host"`
	Rows     []row          `json:"rows"`
	Details  map[string]any `json:"details"`
	Profiles []string       `json:"profiles,omitempty"`
	Problems []string       `json:"problems,omitempty"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	CPU        string `json:"cpu"`
	Go         string `json:"go"`
	OpenSSH    string `json:"openssh"`
	BastionRev string `json:"bastion_rev,omitempty"`
}

func (r *report) add(rows ...row) { r.Rows = append(r.Rows, rows...) }

func (r *report) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	progress("PROBLEM: %s", msg)
	r.Problems = append(r.Problems, msg)
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeMarkdown prints the table: one line per figure, grouped by section.
func (r *report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "## xenbastion benchmark (%s)\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "%d CPUs (%s), %s, %s; rfb console back end: %s; medians of %d runs; ratio = bastion/peer, median of per-run ratios.\n\n",
		r.Machine.CPUs, r.Machine.CPU, r.Machine.Go, r.Machine.OpenSSH, r.Backend, r.Runs)
	if d := r.Host.describe(phaseOrder); d != "" {
		fmt.Fprintf(w, "Host during the run: %s.\n\n", d)
	}
	fmt.Fprintln(w, "| figure | bastion | peer | ratio | target | pass |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | :---: |")
	section := ""
	for _, x := range r.Rows {
		if x.Section != section {
			section = x.Section
			fmt.Fprintf(w, "| **%s** | | | | | |\n", section)
		}
		peer := fmtValue(x.Peer, x.Unit)
		if x.Peer != nil && x.PeerName != "" {
			peer += " (" + x.PeerName + ")"
		}
		pass := ""
		if x.Pass != nil {
			pass = map[bool]string{true: "yes", false: "**no**"}[*x.Pass]
		}
		name := x.Figure
		if x.Note != "" {
			name += " — " + x.Note
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, fmtValue(x.Bastion, x.Unit), peer, fmtRatio(x.Ratio), x.Target, pass)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "- "+p)
		}
	}
}

func fmtValue(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	x := *v
	var s string
	switch {
	case math.IsNaN(x):
		return "—"
	case x == math.Trunc(x) && math.Abs(x) < 1e9:
		s = fmt.Sprintf("%.0f", x)
	case math.Abs(x) < 10:
		s = strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", x), "0"), ".")
	case math.Abs(x) < 1000:
		s = fmt.Sprintf("%.1f", x)
	default:
		s = fmt.Sprintf("%.0f", x)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func fmtRatio(v *float64) string {
	if v == nil || math.IsNaN(*v) {
		return "—"
	}
	return fmt.Sprintf("%.2fx", *v)
}
