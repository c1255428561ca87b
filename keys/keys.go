// Package keys loads and checks SSH keys for the bastion: the authorized_keys
// files that say who may log in, and the bastion's own host key.
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
