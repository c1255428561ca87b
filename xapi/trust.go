package xapi

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Trust says how the certificates of a pool's hosts are checked. Exactly
// one way must be chosen: Fingerprints, CAFile, TrustOnFirstUse or
// InsecureSkipVerify. The zero Trust is refused with [ErrNoTrust].
type Trust struct {
	// Fingerprints are SHA-256 fingerprints of the hosts' certificates, as
	// xapi prints them: uppercase hex bytes separated by colons. A host
	// whose leaf certificate matches none is refused. Pin every host of
	// the pool: consoles are served by the host where the VM runs.
	Fingerprints []string
	// CAFile is a PEM file of CA certificates; hosts must present a chain
	// to one of them, valid for the address dialled.
	CAFile string
	// TrustOnFirstUse records the fingerprint of each host's certificate
	// in KnownHostsFile the first time the client connects to that host
	// (HOST:PORT, as dialled), and from then on refuses a host whose
	// certificate has another fingerprint, with a *[FingerprintError]
	// whose FirstUse is set. Member hosts are recorded when a console on
	// them is first opened. Only a [Client] can check this, since it
	// knows which host it dialled: pass the Trust in [Config.Trust];
	// [Trust.TLSConfig] refuses it.
	TrustOnFirstUse bool
	// KnownHostsFile is the file TrustOnFirstUse keeps the fingerprints
	// in (see [KnownHosts] for its format). It is created, with its
	// directory, on first use. Required with TrustOnFirstUse, ignored
	// otherwise. Pools may share one file.
	KnownHostsFile string
	// InsecureSkipVerify accepts any certificate. Callers should log a
	// warning when they use it.
	InsecureSkipVerify bool
}

// FingerprintHowTo tells an administrator how to read a host's fingerprint.
const FingerprintHowTo = `read a host's fingerprint on the host with
    openssl x509 -noout -fingerprint -sha256 -in /etc/xensource/xapi-ssl.pem
or from anywhere with
    openssl s_client -connect HOST:443 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`

// Fingerprint returns the SHA-256 fingerprint of a DER certificate in xapi's
// format: uppercase hex, colon separated.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return colonHex(sum[:])
}

// colonHex writes b as uppercase hex bytes separated by colons.
func colonHex(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// normalizeFingerprint accepts xapi's format, lowercase, and an optional
// "SHA256:"/"sha256 Fingerprint=" prefix as openssl prints it, and returns
// xapi's format.
func normalizeFingerprint(s string) (string, error) {
	orig := s
	s = strings.TrimSpace(s)
	if i := strings.LastIndexAny(s, "= "); i >= 0 {
		s = s[i+1:]
	}
	raw, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(raw) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q is not a SHA-256 fingerprint (32 hex bytes, colon separated)", orig)
	}
	return colonHex(raw), nil
}

// ErrNoTrust is returned for a Trust that names no way to check hosts.
var ErrNoTrust = errors.New("no TLS trust configured: set tls.fingerprints, tls.ca_file, tls.trust_on_first_use or tls.insecure_skip_verify; " + FingerprintHowTo)

// errFirstUseNeedsClient is returned by TLSConfig for TrustOnFirstUse.
var errFirstUseNeedsClient = errors.New("tls.trust_on_first_use: a tls.Config cannot tell which host it checks: pass the Trust to xapi.NewClient in Config.Trust")

// Validate checks the trust as [NewClient] will use it: exactly one way
// chosen, fingerprints well formed, the CA file readable, and the
// known-hosts file, if it exists already, well formed. It does not
// connect to anything.
func (t Trust) Validate() error {
	_, _, err := t.build()
	return err
}

// TLSConfig returns the client TLS configuration for this trust. It offers
// TLS 1.2 with the ECDHE-RSA-AES-GCM suites and curve P-384, which xapi's
// policy requires, and keeps a session cache so that repeated console
// dials resume instead of doing full handshakes.
//
// TrustOnFirstUse is refused: pass such a Trust in [Config.Trust].
func (t Trust) TLSConfig() (*tls.Config, error) {
	cfg, known, err := t.build()
	if err != nil {
		return nil, err
	}
	if known != nil {
		return nil, errFirstUseNeedsClient
	}
	return cfg, nil
}

// choices returns how many ways of checking hosts t names.
func (t Trust) choices() int {
	n := 0
	for _, set := range []bool{len(t.Fingerprints) > 0, t.CAFile != "", t.TrustOnFirstUse, t.InsecureSkipVerify} {
		if set {
			n++
		}
	}
	return n
}

// build checks t and returns the base TLS configuration, and with
// TrustOnFirstUse the known hosts that the client checks each host
// against (the configuration then skips verification: the client's
// VerifyConnection does it).
func (t Trust) build() (*tls.Config, *KnownHosts, error) {
	switch t.choices() {
	case 0:
		return nil, nil, ErrNoTrust
	case 1:
	default:
		return nil, nil, errors.New("choose only one of tls.fingerprints, tls.ca_file, tls.trust_on_first_use and tls.insecure_skip_verify")
	}

	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// xapi's policy: TLS 1.2, ECDHE-RSA-AES{256,128}-GCM, secp384r1.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		},
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384},
		ClientSessionCache: tls.NewLRUClientSessionCache(1024),
	}
	switch {
	case t.InsecureSkipVerify:
		cfg.InsecureSkipVerify = true
	case t.CAFile != "":
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("tls.ca_file %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	case t.TrustOnFirstUse:
		if t.KnownHostsFile == "" {
			return nil, nil, errors.New("tls.trust_on_first_use: no known-hosts file to record fingerprints in")
		}
		known, err := OpenKnownHosts(t.KnownHostsFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.trust_on_first_use: %w", err)
		}
		// Hosts' certificates are self-signed, so the chain is not
		// checked: the client checks the fingerprint for each host.
		cfg.InsecureSkipVerify = true
		return cfg, known, nil
	default:
		pins := make(map[string]bool, len(t.Fingerprints))
		for _, f := range t.Fingerprints {
			n, err := normalizeFingerprint(f)
			if err != nil {
				return nil, nil, fmt.Errorf("tls.fingerprints: %w", err)
			}
			pins[n] = true
		}
		want := slices.Sorted(maps.Keys(pins))
		// Hosts' certificates are self-signed, so the chain is not checked:
		// the pin is. VerifyConnection also runs on resumed sessions. The
		// client fills in the FingerprintError's Host.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errNoCertificate
			}
			got := Fingerprint(cs.PeerCertificates[0].Raw)
			if !pins[got] {
				return &FingerprintError{Fingerprint: got, Want: want}
			}
			return nil
		}
	}
	return cfg, nil, nil
}

var errNoCertificate = errors.New("xapi host sent no certificate")

// FingerprintError is returned when a host's certificate matches no pinned
// fingerprint, or (FirstUse) not the fingerprint recorded for that host on
// first use. It is the error of a TLS handshake, and the errors of
// [Client] methods wrap it: check for it with errors.As.
type FingerprintError struct {
	// Host is the HOST:PORT dialled; empty when the error comes from a
	// tls.Config of [Trust.TLSConfig] used outside a Client.
	Host string
	// Fingerprint is the host's certificate's fingerprint, xapi format.
	Fingerprint string
	// Want are the fingerprints the host was expected to have: the pinned
	// ones, or those recorded for Host on first use.
	Want []string
	// FirstUse is true when Want was recorded on first use
	// ([Trust.TrustOnFirstUse]) rather than pinned.
	FirstUse bool
	// File is, with FirstUse, the known-hosts file holding Want.
	File string
}

func (e *FingerprintError) Error() string {
	host := "xapi host"
	if e.Host != "" {
		host += " " + e.Host
	}
	if e.FirstUse {
		return fmt.Sprintf("%s certificate %s is not the one recorded on first use (%s in %s); if the host's certificate was replaced on purpose, delete its line from that file",
			host, e.Fingerprint, strings.Join(e.Want, ", "), e.File)
	}
	return host + " certificate " + e.Fingerprint + " is not among the pinned fingerprints"
}
