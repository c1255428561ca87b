package bastion

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/keys"
)

// PolicyOption adds authentication material to a Policy.
type PolicyOption func(*Policy)

// WithUserCAs admits SSH user certificates signed by these CA keys (the
// config's trusted_user_ca_keys).
func WithUserCAs(cas keys.CASet) PolicyOption {
	return func(p *Policy) { p.cas = cas }
}

// WithRevoked refuses these keys, CA keys and fingerprints (the config's
// revoked_keys), including certificates signed by a revoked CA.
func WithRevoked(r *keys.RevocationList) PolicyOption {
	return func(p *Policy) { p.revoked = r }
}

// Reasons an authentication fails, as written in auth.failure.
var (
	ErrUnknownUser  = errors.New("unknown user")
	ErrKeyRevoked   = errors.New("key revoked")
	ErrCertRefused  = errors.New("certificate refused")
	ErrKeyForbidden = errors.New("key not authorized for user")
)

// Authenticate decides whether key may log in as user from remote at now:
// a plain key must be one of the user's, with its from= and expiry-time=
// options honoured; a certificate must be a user certificate signed by a
// trusted CA, name user among its principals, be within its validity
// window, carry no critical option but source-address, and that one must
// admit remote. Revoked keys, certificates and CAs are refused. It returns
// the permissions x/crypto/ssh should enforce (a certificate's
// source-address, again).
func (p *Policy) Authenticate(user string, key gossh.PublicKey, remote net.Addr, now time.Time) (*gossh.Permissions, error) {
	u := p.User(user)
	switch {
	case u == nil:
		return nil, ErrUnknownUser
	case key == nil:
		return nil, ErrKeyForbidden
	case p.revoked.IsRevoked(key):
		return nil, ErrKeyRevoked
	}
	cert, ok := key.(*gossh.Certificate)
	if !ok {
		if _, err := u.Keys.Permit(key, remote, now); err != nil {
			if errors.Is(err, keys.ErrUnknownKey) {
				return nil, ErrKeyForbidden
			}
			return nil, fmt.Errorf("%w: %w", ErrKeyForbidden, err)
		}
		return &gossh.Permissions{}, nil
	}
	refuse := func(why string) (*gossh.Permissions, error) {
		return nil, fmt.Errorf("%w: %s", ErrCertRefused, why)
	}
	switch {
	case p.cas.Len() == 0:
		return refuse("no trusted CA is configured")
	case cert.CertType != gossh.UserCert:
		return refuse("not a user certificate")
	case !p.cas.IsCA(cert.SignatureKey):
		return refuse("signed by an untrusted CA")
	case !slices.Contains(cert.ValidPrincipals, user):
		// Unlike x/crypto, an empty principal list is refused, as sshd
		// does for TrustedUserCAKeys.
		return refuse(fmt.Sprintf("principal %q not in the certificate", user))
	}
	checker := gossh.CertChecker{
		SupportedCriticalOptions: []string{"source-address"},
		Clock:                    func() time.Time { return now },
	}
	if err := checker.CheckCert(user, cert); err != nil {
		return refuse(err.Error())
	}
	if list, ok := cert.CriticalOptions["source-address"]; ok {
		// As sshd: addresses and CIDR networks only. from= in
		// authorized_keys also takes globs, negations and host names;
		// x/crypto, checking the permissions returned, would refuse one
		// only if it got to that entry before a match.
		for entry := range strings.SplitSeq(list, ",") {
			_, aerr := netip.ParseAddr(entry)
			net, perr := netip.ParsePrefix(entry)
			switch {
			case aerr != nil && perr != nil:
				return refuse(fmt.Sprintf("source-address lists %q, not an address or CIDR network", entry))
			case perr == nil && net != net.Masked():
				// sshd's "inconsistent mask length".
				return refuse(fmt.Sprintf("source-address lists %q, a network with host bits set", entry))
			}
		}
		pats, err := keys.ParseAddrPatterns(list)
		if err != nil || !pats.Match(sourceIP(remote)) {
			return refuse("not valid from this address (source-address)")
		}
	}
	return &gossh.Permissions{CriticalOptions: cert.CriticalOptions, Extensions: cert.Extensions}, nil
}

// keyFingerprint is the fingerprint recorded for a key: a certificate's
// is that of its key, as OpenSSH logs it.
func keyFingerprint(k gossh.PublicKey) string {
	if cert, ok := k.(*gossh.Certificate); ok {
		k = cert.Key
	}
	return keys.Fingerprint(k)
}
