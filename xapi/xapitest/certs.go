package xapitest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"
)

// hostCert is the TLS identity of the host at one index of a pool.
type hostCert struct {
	tls  tls.Certificate
	leaf *x509.Certificate
	pem  []byte // the certificate, PEM encoded
}

// certCache holds one certificate per host index, generated once per process
// and shared by every pool, because RSA-2048 key generation is slow. Each
// value is a func made by sync.OnceValues.
var certCache sync.Map // int -> func() (*hostCert, error)

// certificateFor returns the certificate of host index i, generating it on
// first use. Hosts of one pool have distinct indexes, hence distinct
// certificates.
func certificateFor(i int) (*hostCert, error) {
	f, _ := certCache.LoadOrStore(i, sync.OnceValues(func() (*hostCert, error) { return newHostCert(i) }))
	return f.(func() (*hostCert, error))()
}

// newHostCert makes a self-signed certificate like xapi's: RSA-2048, valid
// for ten years. Unlike xapi's it is also a CA certificate and names
// 127.0.0.1, ::1 and localhost, so that a client can trust it through a CA
// file as well as by its fingerprint.
func newHostCert(i int) (*hostCert, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("xapitest: host %d key: %w", i, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("xapitest: host %d serial: %w", i, err)
	}
	name := fmt.Sprintf("xapitest-host-%d", i)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"xenbastion xapitest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("xapitest: host %d certificate: %w", i, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("xapitest: host %d certificate: %w", i, err)
	}
	return &hostCert{
		tls:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		leaf: leaf,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// serverTLSConfig returns xapi's server TLS policy for cert: TLS 1.2 only,
// ECDHE-RSA-AES256-GCM-SHA384 and ECDHE-RSA-AES128-GCM-SHA256, curve
// secp384r1 only.
func serverTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.CurveP384},
	}
}

// fingerprint returns the SHA-256 fingerprint of a DER certificate as xapi
// prints it: uppercase hex bytes separated by colons.
func fingerprint(der []byte) string {
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
