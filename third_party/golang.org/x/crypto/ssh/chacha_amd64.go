// xenbastion patch: see third_party/README.md.

//go:build amd64 && !purego

package ssh

import (
	"crypto/subtle"
	"encoding/binary"

	"github.com/aead/chacha20/chacha"
	"github.com/aead/poly1305"
	"golang.org/x/sys/cpu"
)

// On amd64 the chacha20-poly1305@openssh.com cipher's keystream comes from
// chacha16_amd64.s where the CPU has AVX-512 (sixteen blocks at once, as
// fast as OpenSSL's code here), else from the AVX2 assembly of
// github.com/aead/chacha20; its MAC, for a packet of poly8Min bytes or
// more, from poly8_amd64.s where the CPU has AVX-512 (eight blocks at
// once), else from github.com/aead/poly1305's AVX2 assembly. Package
// chacha20 has no amd64 assembly, and package poly1305's is scalar. All
// are checked against those packages in chacha_test.go.

// useAVX512 says whether chachaXOR may use chacha16 and poly1305Sum
// poly8Blocks; the tests turn it off to check the AVX2 paths too.
var useAVX512 = cpu.X86.HasAVX512F

// chacha16 XORs chunks×1024 bytes of src into dst with the keystream of
// state: sixteen 64-byte blocks per chunk, from block counter state[12]
// on, which must not pass 2^32-1 (it does not carry into state[13]).
// chunks must be at least 1. state is left as it was.
//
//go:noescape
func chacha16(state *[16]uint32, dst, src *byte, chunks int)

// chachaXOR XORs src into dst with the ChaCha20 keystream of key and the
// openssh nonce seq (64-bit block counter, 64-bit nonce), from block
// counter on. dst and src may be the same slice.
func chachaXOR(dst, src []byte, key *[32]byte, seq uint32, counter uint64) {
	nonce := sshNonce(seq)
	if useAVX512 && (len(src) >= 1024 || counter != 0) &&
		counter < 1<<32 && uint64(len(src))/64+16 <= 1<<32-counter {
		if len(dst) < len(src) {
			panic("ssh: chacha20 output shorter than its input")
		}
		chachaXOR16(dst[:len(src)], src, key, &nonce, uint32(counter))
		return
	}
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

// chachaXOR16 is chachaXOR with chacha16, for a counter that stays under
// 2^32. dst is as long as src.
func chachaXOR16(dst, src []byte, key *[32]byte, nonce *[8]byte, counter uint32) {
	s := [16]uint32{0: 0x61707865, 1: 0x3320646e, 2: 0x79622d32, 3: 0x6b206574, 12: counter}
	for i := range 8 {
		s[4+i] = binary.LittleEndian.Uint32(key[4*i:])
	}
	s[14] = binary.LittleEndian.Uint32(nonce[0:])
	s[15] = binary.LittleEndian.Uint32(nonce[4:])
	if n := len(src) / 1024; n > 0 {
		chacha16(&s, &dst[0], &src[0], n)
		s[12] += uint32(16 * n)
		dst, src = dst[1024*n:], src[1024*n:]
	}
	if len(src) > 0 {
		// The last part chunk goes through a chunk-sized buffer on the
		// stack: the assembly takes whole chunks only.
		var buf [1024]byte
		copy(buf[:], src)
		chacha16(&s, &buf[0], &buf[0], 1)
		copy(dst, buf[:len(src)])
	}
}

// poly1305Sum writes msg's Poly1305 tag under the one-time key to out.
func poly1305Sum(out *[16]byte, msg []byte, key *[32]byte) {
	if useAVX512 && len(msg) >= poly8Min {
		poly1305Sum8(out, msg, key)
		return
	}
	*out = poly1305.Sum(msg, *key)
}

// poly1305Verify reports whether mac is msg's Poly1305 tag under key.
func poly1305Verify(mac *[16]byte, msg []byte, key *[32]byte) bool {
	var sum [16]byte
	poly1305Sum(&sum, msg, key)
	return subtle.ConstantTimeCompare(sum[:], mac[:]) == 1
}
