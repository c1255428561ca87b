// xenbastion patch: see third_party/README.md.

//go:build amd64 && !purego

package ssh

import (
	"crypto/subtle"

	"github.com/aead/chacha20/chacha"
	"github.com/aead/poly1305"
)

// On amd64 the chacha20-poly1305@openssh.com cipher uses the AVX2 assembly
// of github.com/aead/chacha20 and github.com/aead/poly1305: package
// chacha20 has no amd64 assembly, and package poly1305's is scalar. Both
// are checked against those packages in chacha_test.go.

// chachaXOR XORs src into dst with the ChaCha20 keystream of key and the
// openssh nonce seq (64-bit block counter, 64-bit nonce), from block
// counter on. dst and src may be the same slice.
func chachaXOR(dst, src []byte, key *[32]byte, seq uint32, counter uint64) {
	nonce := sshNonce(seq)
	if counter == 0 {
		chacha.XORKeyStream(dst, src, nonce[:], key[:], 20)
		return
	}
	c, err := chacha.NewCipher(nonce[:], key[:], 20)
	if err != nil {
		panic(err) // the nonce and key sizes are fixed
	}
	c.SetCounter(counter)
	c.XORKeyStream(dst, src)
}

// poly1305Sum writes msg's Poly1305 tag under the one-time key to out.
func poly1305Sum(out *[16]byte, msg []byte, key *[32]byte) {
	*out = poly1305.Sum(msg, *key)
}

// poly1305Verify reports whether mac is msg's Poly1305 tag under key.
func poly1305Verify(mac *[16]byte, msg []byte, key *[32]byte) bool {
	sum := poly1305.Sum(msg, *key)
	return subtle.ConstantTimeCompare(sum[:], mac[:]) == 1
}
