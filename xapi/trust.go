package xapi

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Trust says how the certificates of a pool's hosts are checked. Exactly
// one way must be chosen; the zero Trust is refused by [Trust.TLSConfig].
type Trust struct {
	// Fingerprints are SHA-256 fingerprints of the hosts' certificates, as
	// xapi prints them: uppercase hex bytes separated by colons. A host
	// whose leaf certificate matches none is refused. Pin every host of
	// the pool: consoles are served by the host where the VM runs.
	Fingerprints []string
	// CAFile is a PEM file of CA certificates; hosts must present a chain
	// to one of them, valid for the address dialled.
	CAFile string
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
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
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
	var b strings.Builder
	for i, c := range raw {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String(), nil
}

// ErrNoTrust is returned for a Trust that names no way to check hosts.
var ErrNoTrust = errors.New("no TLS trust configured: set tls.fingerprints, tls.ca_file or tls.insecure_skip_verify; " + FingerprintHowTo)

// TLSConfig returns the client TLS configuration for this trust. It offers
// TLS 1.2 with the ECDHE-RSA-AES-GCM suites and curve P-384, which xapi's
// policy requires, and keeps a session cache so that repeated console
// dials resume instead of doing full handshakes.
func (t Trust) TLSConfig() (*tls.Config, error) {
	n := 0
	if len(t.Fingerprints) > 0 {
		n++
	}
	if t.CAFile != "" {
		n++
	}
	if t.InsecureSkipVerify {
		n++
	}
	switch {
	case n == 0:
		return nil, ErrNoTrust
	case n > 1:
		return nil, errors.New("choose one of tls.fingerprints, tls.ca_file and tls.insecure_skip_verify")
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
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	default:
		pins := make(map[string]bool, len(t.Fingerprints))
		for _, f := range t.Fingerprints {
			n, err := normalizeFingerprint(f)
			if err != nil {
				return nil, fmt.Errorf("tls.fingerprints: %w", err)
			}
			pins[n] = true
		}
		// Hosts' certificates are self-signed, so the chain is not checked:
		// the pin is. VerifyConnection also runs on resumed sessions.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("xapi host sent no certificate")
			}
			got := Fingerprint(cs.PeerCertificates[0].Raw)
			if !pins[got] {
				return &FingerprintError{Fingerprint: got}
			}
			return nil
		}
	}
	return cfg, nil
}

// FingerprintError is returned when a host's certificate matches no pinned
// fingerprint.
type FingerprintError struct {
	Fingerprint string // the host's certificate fingerprint, xapi format
}

func (e *FingerprintError) Error() string {
	return "xapi host certificate " + e.Fingerprint + " is not among the pinned fingerprints"
}
