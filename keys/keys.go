// Package keys loads and checks SSH keys for the bastion: the authorized_keys
// files that say who may log in and from where (KeySet, with the from= and
// expiry-time= options), the CA keys trusted to sign user certificates
// (CASet), the revoked keys, certificates and CAs (RevocationList), and the
// bastion's own host key.
//
// Every loader fails on the first line it cannot parse or does not support,
// with a *ParseError naming the file and line, where sshd would skip that
// line: a typo stops the bastion at start-up instead of locking a user out,
// and an option the bastion does not enforce cannot let a user in with
// fewer limits than the line asks for.
package keys

import "golang.org/x/crypto/ssh"

// Fingerprint returns the fingerprint of k exactly as OpenSSH prints it, for
// example in ssh-keygen -l and in sshd's logs: "SHA256:" followed by the
// unpadded base64 of the SHA-256 of the key's wire form. It is
// ssh.FingerprintSHA256, named here so that every log and audit record of
// the bastion uses the same form.
func Fingerprint(k ssh.PublicKey) string {
	return ssh.FingerprintSHA256(k)
}
