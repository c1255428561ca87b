// xenbastion patch: see third_party/README.md.

//go:build !amd64 || purego

package ssh

import (
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/internal/poly1305"
)

// useAVX512 is always false here: chacha16 and poly8Blocks are amd64
// assembly. The tests read it to know which paths there are.
var useAVX512 = false

// chachaXOR XORs src into dst with the ChaCha20 keystream of key and the
// openssh nonce seq (64-bit block counter, 64-bit nonce), from block
// counter on. dst and src may be the same slice.
func chachaXOR(dst, src []byte, key *[32]byte, seq uint32, counter uint64) {
	var nonce [12]byte // IETF layout: the same keystream while the counter fits 32 bits
	n := sshNonce(seq)
	copy(nonce[4:], n[:])
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		panic(err) // the nonce and key sizes are fixed
	}
	c.SetCounter(uint32(counter))
	c.XORKeyStream(dst, src)
}

// poly1305Sum writes msg's Poly1305 tag under the one-time key to out.
func poly1305Sum(out *[16]byte, msg []byte, key *[32]byte) {
	poly1305.Sum(out, msg, key)
}

// poly1305Verify reports whether mac is msg's Poly1305 tag under key.
func poly1305Verify(mac *[16]byte, msg []byte, key *[32]byte) bool {
	return poly1305.Verify(mac, msg, key)
}
