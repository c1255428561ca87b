// xenbastion patch: see third_party/README.md.

//go:build !amd64 || purego

package ssh

import "crypto/cipher"

// useVAES is always false here: vaesGCM is amd64 assembly.
var useVAES = false

// newVAESGCM returns nil: newGCMCipher takes crypto/cipher's GCM.
func newVAESGCM(key []byte) cipher.AEAD { return nil }
