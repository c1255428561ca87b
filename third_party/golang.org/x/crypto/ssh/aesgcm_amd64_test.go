// xenbastion patch: vaesGCM's assembly at its edges.

//go:build linux && !purego

package ssh

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"testing"
)

// TestVAESCounterWrap checks that the counter counts in its last 32 bits
// only (GCM's inc32), across the wrap from 2^32-1 to 0, against one
// crypto/aes block at a time.
func TestVAESCounterWrap(t *testing.T) {
	for _, size := range []int{16, 32} {
		key := make([]byte, size)
		rand.Read(key)
		v, _ := vaesPairKey(t, key)
		g := v.(*vaesGCM)
		b, _ := aes.NewCipher(key)
		for _, n := range []int{16, 100, 256, 1000, 4100} {
			for _, start := range []uint32{0xffffffff, 0xfffffff0, 0xffffff00} {
				var ctr [16]byte
				rand.Read(ctr[:12])
				binary.BigEndian.PutUint32(ctr[12:], start)
				src := make([]byte, n)
				rand.Read(src)
				got := make([]byte, n)
				ctrVAES(&g.rk, g.rounds, &ctr, got, src)
				want := make([]byte, n)
				block := ctr
				var ks [16]byte
				for i := 0; i < n; i += 16 {
					b.Encrypt(ks[:], block[:])
					for j := i; j < min(i+16, n); j++ {
						want[j] = src[j] ^ ks[j-i]
					}
					binary.BigEndian.PutUint32(block[12:], binary.BigEndian.Uint32(block[12:])+1)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("AES-%d, %d bytes from counter %#x: keystream differs from crypto/aes's", size*8, n, start)
				}
			}
		}
	}
}

// TestVAESBounds runs ctrVAES and ghashVAES over slices that end where an
// unmapped page begins: their masked loads and stores of a last part
// block must not touch a byte past the end, or they fault.
func TestVAESBounds(t *testing.T) {
	v, _ := vaesPair(t, 16)
	g := v.(*vaesGCM)
	mem := beforeUnmappedPage(t)
	end := len(mem)
	var ctr, acc [16]byte
	for n := 0; n <= end/2+300; n++ {
		b := mem[end-n : end : end]
		ctrVAES(&g.rk, g.rounds, &ctr, b, b)
		ghashVAES(&g.htab, &acc, b)
	}
	// And whole packets sealed and opened in place against the end.
	nonce := make([]byte, 12)
	for n := 0; n <= 600; n++ {
		b := mem[end-n-gcmTagSize : end : end]
		rand.Read(b[:n])
		want := bytes.Clone(b[:n])
		sealed := v.Seal(b[:0], nonce, b[:n], nil)
		opened, err := v.Open(sealed[:0], nonce, sealed, nil)
		if err != nil || !bytes.Equal(opened, want) {
			t.Fatalf("%d bytes sealed and opened in place: %v", n, err)
		}
	}
}

// TestGCMCipherPaths checks that newGCMCipher takes vaesGCM where it can
// run, and crypto/cipher's GCM when useVAES is off.
func TestGCMCipherPaths(t *testing.T) {
	saved := useVAES
	defer func() { useVAES = saved }()
	for _, on := range []bool{false, true} {
		useVAES = on
		c, err := newGCMCipher(make([]byte, 16), make([]byte, 12), nil, DirectionAlgorithms{})
		if err != nil {
			t.Fatal(err)
		}
		_, isVAES := c.(*gcmCipher).aead.(*vaesGCM)
		if isVAES != (on && saved) {
			t.Errorf("useVAES %v (CPU can: %v): vaesGCM chosen: %v", on, saved, isVAES)
		}
	}
}
