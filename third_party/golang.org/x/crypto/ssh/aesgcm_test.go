// xenbastion patch: vaesGCM against crypto/cipher's GCM.

package ssh

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"testing"
)

// vaesPair returns vaesGCM and crypto/cipher's GCM for a random key of
// size bytes, skipping the test where vaesGCM cannot run.
func vaesPair(t testing.TB, size int) (cipher.AEAD, cipher.AEAD) {
	key := make([]byte, size)
	rand.Read(key)
	return vaesPairKey(t, key)
}

func vaesPairKey(t testing.TB, key []byte) (cipher.AEAD, cipher.AEAD) {
	v := newVAESGCM(key)
	if v == nil {
		t.Skip("no vaesGCM here: it needs amd64 with AVX-512 VAES and VPCLMULQDQ")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return v, ref
}

// gcmLengths are the plaintext lengths checked: every one up to 600
// (every tail of the sixteen-block loops, with and without a full round
// of them), and SSH packet sizes around 4 KiB and 32 KiB.
func gcmLengths() []int {
	var ls []int
	for n := 0; n <= 600; n++ {
		ls = append(ls, n)
	}
	for _, base := range []int{4096, 32768} {
		for d := -17; d <= 17; d++ {
			ls = append(ls, base+d)
		}
	}
	return append(ls, 32768+5+16, maxPacket)
}

func TestVAESGCMSeal(t *testing.T) {
	for _, size := range []int{16, 32} {
		t.Run(fmt.Sprintf("AES-%d", size*8), func(t *testing.T) {
			v, ref := vaesPair(t, size)
			nonce := make([]byte, 12)
			for _, aadLen := range []int{0, 4, 15, 16, 17, 255, 256, 300, 512, 1000} {
				aad := make([]byte, aadLen)
				rand.Read(aad)
				for _, n := range gcmLengths() {
					rand.Read(nonce)
					plain := make([]byte, n)
					rand.Read(plain)
					want := ref.Seal(nil, nonce, plain, aad)
					got := v.Seal(nil, nonce, plain, aad)
					if !bytes.Equal(got, want) {
						t.Fatalf("aad %d, plaintext %d: Seal differs from crypto/cipher's", aadLen, n)
					}
					// In place, and appended to a prefix.
					buf := append([]byte("prefix"), plain...)
					got = v.Seal(buf[:6], nonce, buf[6:], aad)
					if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
						t.Fatalf("aad %d, plaintext %d: Seal in place differs from crypto/cipher's", aadLen, n)
					}
					opened, err := v.Open(nil, nonce, want, aad)
					if err != nil || !bytes.Equal(opened, plain) {
						t.Fatalf("aad %d, plaintext %d: Open: %v", aadLen, n, err)
					}
					opened, err = v.Open(got[6:6], nonce, got[6:], aad)
					if err != nil || !bytes.Equal(opened, plain) {
						t.Fatalf("aad %d, plaintext %d: Open in place: %v", aadLen, n, err)
					}
				}
			}
		})
	}
}

// TestVAESGCMRandom compares vaesGCM with crypto/cipher's GCM on random
// keys, lengths and buffer alignments.
func TestVAESGCMRandom(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	mem := make([]byte, 64+6000+16)
	for i := range 2000 {
		size := 16 * (1 + i%2)
		v, ref := vaesPair(t, size)
		n, aadLen, off := rng.IntN(5000), rng.IntN(600), rng.IntN(64)
		nonce, aad := make([]byte, 12), make([]byte, aadLen)
		rand.Read(nonce)
		rand.Read(aad)
		buf := mem[off : off+n+gcmTagSize]
		rand.Read(buf[:n])
		plain := bytes.Clone(buf[:n])
		want := ref.Seal(nil, nonce, plain, aad)
		if got := v.Seal(buf[:0], nonce, buf[:n], aad); !bytes.Equal(got, want) {
			t.Fatalf("AES-%d, plaintext %d, aad %d, offset %d: Seal differs", size*8, n, aadLen, off)
		}
		if got, err := v.Open(buf[:0], nonce, buf, aad); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("AES-%d, plaintext %d, aad %d, offset %d: Open: %v", size*8, n, aadLen, off, err)
		}
	}
}

// TestVAESGCMAPI checks what vaesGCM shares with crypto/cipher's GCM
// besides its output: the result lies in dst when dst has just the room,
// and a wrong nonce size or an overlap of input and output panics.
func TestVAESGCMAPI(t *testing.T) {
	v, _ := vaesPair(t, 16)
	nonce := make([]byte, 12)
	for _, n := range []int{0, 1, 100, 1000} {
		buf := make([]byte, n, n+gcmTagSize)
		sealed := v.Seal(buf[:0], nonce, buf, nil)
		if &sealed[0] != &buf[:1][0] {
			t.Errorf("%d bytes: Seal with room for the tag did not seal in place", n)
		}
		opened, err := v.Open(sealed[:0], nonce, sealed, nil)
		if err != nil || len(opened) != n || (n > 0 && &opened[0] != &buf[0]) {
			t.Errorf("%d bytes: Open in place: %v", n, err)
		}
	}
	panics := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		f()
	}
	buf := make([]byte, 100)
	panics("Seal with an 8-byte nonce", func() { v.Seal(nil, make([]byte, 8), buf, nil) })
	panics("Open with a 16-byte nonce", func() { v.Open(nil, make([]byte, 16), buf, nil) })
	panics("Seal into its input shifted", func() { v.Seal(buf[1:1], nonce, buf[:50], nil) })
	sealed := v.Seal(nil, nonce, buf[:50], nil)
	panics("Open into its input shifted", func() { v.Open(sealed[1:1], nonce, sealed, nil) })
}

// TestVAESGCMKnown checks the test vectors of the GCM specification (test
// cases 3 and 15, with the 12-byte IV: AES-128 and AES-256 with no
// additional data; 4 and 16, with it).
func TestVAESGCMKnown(t *testing.T) {
	h := func(s string) []byte {
		var b []byte
		if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	const plain = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
	for _, tc := range []struct{ key, iv, aad, plain, out string }{
		{"feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "", plain + "1aafd255",
			"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f59854d5c2af327cd64a62cf35abd2ba6fab4"},
		{"feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", plain,
			"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e0915bc94fbc3221a5db94fae95ae7121a47"},
		{"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "", plain + "1aafd255",
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015adb094dac5d93471bdec1a502270e3cc6c"},
		{"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", plain,
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b"},
	} {
		v, _ := vaesPairKey(t, h(tc.key))
		var aad []byte
		if tc.aad != "" {
			aad = h(tc.aad)
		}
		if got := v.Seal(nil, h(tc.iv), h(tc.plain), aad); !bytes.Equal(got, h(tc.out)) {
			t.Errorf("key %s, aad %q:\n got %x\nwant %s", tc.key, tc.aad, got, tc.out)
		}
	}
}

// TestVAESGCMOpenFails checks that Open refuses a packet with any bit
// of its ciphertext, tag or additional data changed, or too short, and
// leaves no plaintext behind.
func TestVAESGCMOpenFails(t *testing.T) {
	for _, size := range []int{16, 32} {
		t.Run(fmt.Sprintf("AES-%d", size*8), func(t *testing.T) { testVAESGCMOpenFails(t, size) })
	}
}

func testVAESGCMOpenFails(t *testing.T, size int) {
	v, _ := vaesPair(t, size)
	nonce := make([]byte, 12)
	aad := []byte{0, 0, 1, 0}
	for _, n := range []int{0, 1, 16, 100, 1000} {
		plain := make([]byte, n)
		rand.Read(plain)
		sealed := v.Seal(nil, nonce, plain, aad)
		for bit := 0; bit < 8*len(sealed); bit += 1 + bit/64 {
			bad := bytes.Clone(sealed)
			bad[bit/8] ^= 1 << (bit % 8)
			out, err := v.Open(bad[:0], nonce, bad, aad)
			if err == nil || out != nil {
				t.Fatalf("plaintext %d: Open accepted bit %d flipped", n, bit)
			}
			if !bytes.Equal(bad[:n], make([]byte, n)) {
				t.Fatalf("plaintext %d: a failed Open left its output", n)
			}
		}
		for bit := range 8 * len(aad) {
			badAAD := bytes.Clone(aad)
			badAAD[bit/8] ^= 1 << (bit % 8)
			if _, err := v.Open(nil, nonce, sealed, badAAD); err == nil {
				t.Fatalf("plaintext %d: Open accepted additional data bit %d flipped", n, bit)
			}
		}
		badNonce := bytes.Clone(nonce)
		badNonce[11] ^= 1
		if _, err := v.Open(nil, badNonce, sealed, aad); err == nil {
			t.Fatalf("plaintext %d: Open accepted another nonce", n)
		}
	}
	for n := range gcmTagSize {
		if _, err := v.Open(nil, nonce, make([]byte, n), aad); err == nil {
			t.Fatalf("Open accepted %d bytes, shorter than a tag", n)
		}
	}
}

func BenchmarkGCMPacket(b *testing.B) {
	saved := useVAES
	defer func() { useVAES = saved }()
	for _, on := range []bool{false, true} {
		if on && !saved {
			continue
		}
		name := "stdlib"
		if on {
			name = "vaes"
		}
		useVAES = on
		c, err := newGCMCipher(make([]byte, 16), make([]byte, 12), nil, DirectionAlgorithms{})
		if err != nil {
			b.Fatal(err)
		}
		aead := c.(*gcmCipher).aead
		for _, n := range []int{32, 64, 128, 256, 512, 1024, 32768} {
			buf := make([]byte, n+gcmTagSize)
			nonce := make([]byte, 12)
			aad := make([]byte, 4)
			b.Run(fmt.Sprintf("%s/seal/%d", name, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					aead.Seal(buf[:0], nonce, buf[:n], aad)
				}
			})
			sealed := aead.Seal(nil, nonce, buf[:n], aad)
			b.Run(fmt.Sprintf("%s/open/%d", name, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					copy(buf, sealed)
					if _, err := aead.Open(buf[:0], nonce, buf[:len(sealed)], aad); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
