package xapi

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// KnownHosts is a file of xapi hosts' certificate fingerprints, kept for
// [Trust.TrustOnFirstUse] like SSH's known_hosts. Each line is
//
//	POOL HOST:PORT FINGERPRINT
//
// where POOL is the pool's name ([Config.Name]), HOST:PORT the address
// dialled (port 443 unless xapi names another; IPv6 in brackets) and
// FINGERPRINT the SHA-256 fingerprint of the host's certificate in xapi's
// format (uppercase hex, colon separated). Blank lines and lines starting
// with '#' are ignored. A host may have several lines: any of their
// fingerprints is accepted (add one to roll a certificate over). A host
// reached under two addresses (a DNS name in the pool's URL, its IP address
// in console locations) has a line for each.
//
// New hosts are appended, keeping every line already there, by writing a
// temporary file (mode 0600) and renaming it over the file; the directory
// is created (mode 0700) if need be. The file is read at every check, so
// an administrator may delete a line while the bastion runs to accept a
// host's new certificate. Two processes that record
// hosts in one file at the same moment may lose one of the new lines: the
// host is then recorded again at its next connection.
//
// A KnownHosts is safe for concurrent use. [OpenKnownHosts] returns the
// same KnownHosts for every use of a file in a process, so clients of
// several pools that share a file do not overwrite each other's lines.
type KnownHosts struct {
	path string // absolute

	// mu guards the fields below and serialises writes to the file.
	mu      sync.Mutex
	entries map[knownHost][]string // fingerprints by pool and normalised HOST:PORT; nil until first read
	raw     []byte                 // the file as last read or written; nil if it did not exist
}

type knownHost struct{ pool, host string }

// knownHostsFiles holds the KnownHosts of every file opened, by absolute
// path.
var knownHostsFiles struct {
	mu sync.Mutex
	m  map[string]*KnownHosts
}

// knownHostsHeader starts a file that KnownHosts creates.
const knownHostsHeader = `# xenbastion: certificates of xapi hosts, recorded on first use.
# POOL HOST:PORT SHA256-FINGERPRINT
# Delete a host's line to accept its new certificate at the next connection.
`

// OpenKnownHosts returns the KnownHosts of the file at path, reading the
// file if it exists; a missing file is empty and is created on the first
// record. Every call with the same file (by absolute path) in a process
// returns the same KnownHosts. An error names the file, and the line for a
// malformed one.
func OpenKnownHosts(path string) (*KnownHosts, error) {
	if path == "" {
		return nil, errors.New("known-hosts file: no path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("known-hosts file %s: %w", path, err)
	}
	knownHostsFiles.mu.Lock()
	defer knownHostsFiles.mu.Unlock()
	k := knownHostsFiles.m[abs]
	if k == nil {
		k = &KnownHosts{path: abs}
	}
	k.mu.Lock()
	err = k.refresh()
	k.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if knownHostsFiles.m == nil {
		knownHostsFiles.m = make(map[string]*KnownHosts)
	}
	knownHostsFiles.m[abs] = k
	return k, nil
}

// Path returns the file's absolute path.
func (k *KnownHosts) Path() string { return k.path }

// Lookup returns the fingerprints recorded for pool's host at hostport
// (HOST:PORT), none if it has none.
func (k *KnownHosts) Lookup(pool, hostport string) ([]string, error) {
	host, err := normalizeHostPort(hostport)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.refresh(); err != nil {
		return nil, err
	}
	return slices.Clone(k.entries[knownHost{pool, host}]), nil
}

// Check checks fingerprint, of the certificate that pool's host at
// hostport (HOST:PORT) presents, against the file. If the host has no
// line, Check records it and returns recorded true. If it has lines and
// none has this fingerprint, Check returns a *[FingerprintError] with
// FirstUse set. Any other error (the file cannot be read or written, or
// is malformed) means the host must not be trusted either.
func (k *KnownHosts) Check(pool, hostport, fingerprint string) (recorded bool, err error) {
	return k.check(pool, hostport, fingerprint, true)
}

// Verify is Check without the recording: a host with no line passes.
// A TLS client verifies before the server has proved that it holds the
// certificate's key, and records (Check) only once the handshake is done.
func (k *KnownHosts) Verify(pool, hostport, fingerprint string) error {
	_, err := k.check(pool, hostport, fingerprint, false)
	return err
}

func (k *KnownHosts) check(pool, hostport, fingerprint string, record bool) (recorded bool, err error) {
	if err := checkPoolName(pool); err != nil {
		return false, err
	}
	host, err := normalizeHostPort(hostport)
	if err != nil {
		return false, err
	}
	fp, err := normalizeFingerprint(fingerprint)
	if err != nil {
		return false, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.refresh(); err != nil {
		return false, err
	}
	key := knownHost{pool, host}
	if want := k.entries[key]; len(want) > 0 {
		if slices.Contains(want, fp) {
			return false, nil
		}
		return false, &FingerprintError{Host: hostport, Fingerprint: fp, Want: slices.Clone(want), FirstUse: true, File: k.path}
	}
	if !record {
		return false, nil
	}
	if err := k.add(key, fp); err != nil {
		return false, fmt.Errorf("recording the certificate of %s: %w", hostport, err)
	}
	return true, nil
}

// add appends a line for key to the file and records it. k.mu is held.
func (k *KnownHosts) add(key knownHost, fp string) error {
	var data []byte
	if len(bytes.TrimSpace(k.raw)) == 0 {
		data = []byte(knownHostsHeader)
	} else {
		data = slices.Clip(k.raw)
		if data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
	}
	data = append(data, key.pool+" "+key.host+" "+fp+"\n"...)
	if err := writeFileAtomic(k.path, data); err != nil {
		return err
	}
	k.raw = data
	k.entries[key] = append(k.entries[key], fp)
	return nil
}

// refresh reads the file and parses it again if it changed since it was
// last read or written. On error the entries are left as they were, and the
// next call tries again. k.mu is held.
//
// The file is read each time rather than checked with stat: it is small,
// a read costs much less than the TLS handshake it serves, and a
// modification time (of coarse granularity) can miss an edit that keeps
// the size.
func (k *KnownHosts) refresh() error {
	data, err := os.ReadFile(k.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data = nil
	case err != nil:
		return fmt.Errorf("known-hosts file: %w", err)
	case k.entries != nil && bytes.Equal(data, k.raw):
		return nil
	}
	entries, err := parseKnownHosts(k.path, data)
	if err != nil {
		return err
	}
	k.entries, k.raw = entries, data
	return nil
}

// parseKnownHosts parses a known-hosts file; errors name file:line.
func parseKnownHosts(path string, data []byte) (map[knownHost][]string, error) {
	entries := make(map[knownHost][]string)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", path, i+1, fmt.Sprintf(format, args...))
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, bad("want POOL HOST:PORT FINGERPRINT, got %d fields", len(f))
		}
		if err := checkPoolName(f[0]); err != nil {
			return nil, bad("%v", err)
		}
		host, err := normalizeHostPort(f[1])
		if err != nil {
			return nil, bad("%v", err)
		}
		fp, err := normalizeFingerprint(f[2])
		if err != nil {
			return nil, bad("%v", err)
		}
		key := knownHost{f[0], host}
		if !slices.Contains(entries[key], fp) {
			entries[key] = append(entries[key], fp)
		}
	}
	return entries, nil
}

// checkPoolName refuses a pool name that cannot be a known-hosts field.
func checkPoolName(pool string) error {
	if pool == "" || pool[0] == '#' || strings.ContainsFunc(pool, unicode.IsSpace) {
		return fmt.Errorf("pool name %q: a known-hosts file needs a name without spaces, not starting with '#'", pool)
	}
	return nil
}

// normalizeHostPort returns HOST:PORT with IP addresses in their canonical
// form and names in lower case, so that one host has one spelling.
func normalizeHostPort(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("host %q: want HOST:PORT", hostport)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("host %q: bad port", hostport)
	}
	if host == "" || strings.ContainsFunc(host, unicode.IsSpace) {
		return "", fmt.Errorf("host %q: bad host", hostport)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else {
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, port), nil
}

// writeFileAtomic replaces the file at path with data: a temporary file of
// mode 0600 in the same directory, synced, then renamed over it. It creates
// the directory (mode 0700) if need be.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; not every system can
		d.Close()
	}
	return nil
}
