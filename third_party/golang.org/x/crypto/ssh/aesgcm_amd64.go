// xenbastion patch: see third_party/README.md.

//go:build amd64 && !purego

package ssh

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/internal/alias"
	"golang.org/x/sys/cpu"
)

// On amd64 the aes128-gcm@openssh.com and aes256-gcm@openssh.com ciphers
// come from aesgcm_amd64.s where the CPU has VAES and VPCLMULQDQ on
// 512-bit registers: sixteen blocks at once, where crypto/cipher's GCM
// (gcm_amd64.s) takes eight with 128-bit AES-NI. The Go standard library
// has no such code, nor does any Go package. vaesGCM is checked against
// crypto/cipher's GCM in aesgcm_test.go.

// useVAES says whether newGCMCipher may use vaesGCM; the tests and
// benchmarks turn it off to compare it with crypto/cipher's GCM.
// (x/sys/cpu reports AVX-512 only where the OS saves its registers.)
var useVAES = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW &&
	cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ && cpu.X86.HasAVX2 &&
	cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ && cpu.X86.HasBMI2

// expandKeyVAES writes the AES encryption key schedule of key (16 bytes
// for 10 rounds, 32 for 14) to rk.
//
//go:noescape
func expandKeyVAES(key *byte, rk *[15][16]byte, rounds int)

// gcmInitVAES sets htab[i] to H^(16-i) for i < 16, H the GHASH key of rk.
//
//go:noescape
func gcmInitVAES(htab *[32][16]byte, rk *[15][16]byte, rounds int)

// ctrVAES XORs src into dst (at least as long) with the AES-CTR keystream
// of rk from counter block *ctr on, counting in its last 32 bits.
//
//go:noescape
func ctrVAES(rk *[15][16]byte, rounds int, ctr *[16]byte, dst, src []byte)

// ghashVAES folds data, its last block padded with zeros, into the GHASH
// accumulator *acc.
//
//go:noescape
func ghashVAES(htab *[32][16]byte, acc *[16]byte, data []byte)

// vaesGCM is AES-GCM with a 12-byte nonce and a 16-byte tag, as
// crypto/cipher.NewGCM makes it.
type vaesGCM struct {
	rk     [15][16]byte // the key schedule
	rounds int
	// htab holds H^16 to H^1, then sixteen blocks that keep in bounds
	// ghashVAES's read of the powers for a tail of r blocks,
	// htab[16-r:][:16] (it multiplies the blocks past r by zero).
	htab [32][16]byte
}

// newVAESGCM returns AES-GCM for key, or nil if useVAES is off or the key
// is not 16 or 32 bytes (the SSH ciphers' sizes).
func newVAESGCM(key []byte) cipher.AEAD {
	if !useVAES {
		return nil
	}
	g := new(vaesGCM)
	switch len(key) {
	case 16:
		g.rounds = 10
	case 32:
		g.rounds = 14
	default:
		return nil
	}
	expandKeyVAES(&key[0], &g.rk, g.rounds)
	gcmInitVAES(&g.htab, &g.rk, g.rounds)
	return g
}

const (
	gcmNonceSize = 12
	// gcmMaxPlain is the longest plaintext GCM encrypts: 2^32-2 blocks.
	gcmMaxPlain = (1<<32 - 2) * 16
)

var errGCMOpen = errors.New("ssh: message authentication failed")

func (g *vaesGCM) NonceSize() int { return gcmNonceSize }
func (g *vaesGCM) Overhead() int  { return gcmTagSize }

func (g *vaesGCM) Seal(dst, nonce, plaintext, additionalData []byte) []byte {
	if len(nonce) != gcmNonceSize {
		panic("ssh: incorrect nonce length given to GCM")
	}
	if uint64(len(plaintext)) > gcmMaxPlain {
		panic("ssh: message too large for GCM")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+gcmTagSize)
	if alias.InexactOverlap(out, plaintext) {
		panic("ssh: invalid buffer overlap of output and input")
	}
	var ctr, tagMask [16]byte
	g.start(&ctr, &tagMask, nonce)
	g.ctr(&ctr, out, plaintext)
	g.tag(out[len(plaintext):], &tagMask, additionalData, out[:len(plaintext)])
	return ret
}

func (g *vaesGCM) Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error) {
	if len(nonce) != gcmNonceSize {
		panic("ssh: incorrect nonce length given to GCM")
	}
	if len(ciphertext) < gcmTagSize || uint64(len(ciphertext)) > gcmMaxPlain+gcmTagSize {
		return nil, errGCMOpen
	}
	tag := ciphertext[len(ciphertext)-gcmTagSize:]
	ciphertext = ciphertext[:len(ciphertext)-gcmTagSize]
	ret, out := sliceForAppend(dst, len(ciphertext))
	if alias.InexactOverlap(out, ciphertext) {
		panic("ssh: invalid buffer overlap of output and input")
	}
	var ctr, tagMask, want [16]byte
	g.start(&ctr, &tagMask, nonce)
	// The tag is checked before anything is decrypted.
	g.tag(want[:], &tagMask, additionalData, ciphertext)
	if subtle.ConstantTimeCompare(want[:], tag) != 1 {
		clear(out) // as crypto/cipher does
		return nil, errGCMOpen
	}
	g.ctr(&ctr, out, ciphertext)
	return ret, nil
}

// start sets ctr to the first counter block of the data and tagMask to
// the encrypted first counter block (J0) of nonce.
func (g *vaesGCM) start(ctr, tagMask *[16]byte, nonce []byte) {
	copy(ctr[:], nonce)
	ctr[15] = 1
	var zero [16]byte
	g.ctr(ctr, tagMask[:], zero[:])
	ctr[15] = 2
}

// ctr XORs src into dst with the keystream from counter block *ctr on.
func (g *vaesGCM) ctr(ctr *[16]byte, dst, src []byte) {
	if len(dst) < len(src) {
		panic("ssh: AES-CTR output shorter than its input") // the assembly writes len(src) bytes
	}
	ctrVAES(&g.rk, g.rounds, ctr, dst, src)
}

// tag writes the tag of additionalData and ciphertext to t.
func (g *vaesGCM) tag(t []byte, tagMask *[16]byte, additionalData, ciphertext []byte) {
	var acc, lengths [16]byte
	ghashVAES(&g.htab, &acc, additionalData)
	ghashVAES(&g.htab, &acc, ciphertext)
	binary.BigEndian.PutUint64(lengths[:8], uint64(len(additionalData))*8)
	binary.BigEndian.PutUint64(lengths[8:], uint64(len(ciphertext))*8)
	ghashVAES(&g.htab, &acc, lengths[:])
	// acc is byte-reversed.
	for i := range t[:gcmTagSize] {
		t[i] = acc[15-i] ^ tagMask[i]
	}
}

// sliceForAppend is crypto/cipher's: head is in extended by n bytes, and
// tail those n bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
