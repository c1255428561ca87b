// xenbastion patch: checks chacha_amd64.go's assembly against the packages
// upstream uses.

package ssh

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/internal/poly1305"
)

// refXOR is chachaXOR done with package chacha20, as upstream does.
func refXOR(dst, src []byte, key *[32]byte, seq uint32, counter uint64) {
	var nonce [12]byte
	n := sshNonce(seq)
	copy(nonce[4:], n[:])
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		panic(err)
	}
	c.SetCounter(uint32(counter))
	c.XORKeyStream(dst, src)
}

// testLengths are the message lengths checked: every length around the
// block sizes of the assembly (64-byte ChaCha20 blocks, up to 8 of them
// at once with AVX2 and 16 with AVX-512; 16-byte Poly1305 blocks, 4 at
// once) and packet-sized ones.
func testLengths(r *rand.Rand) []int {
	var ls []int
	for n := 0; n <= 1100; n++ {
		ls = append(ls, n)
	}
	for range 60 {
		ls = append(ls, r.IntN(maxPacket+1))
	}
	return append(ls, 32768, 32768+5+16, maxPacket)
}

// asmPaths runs f once for each path chachaXOR and poly1305Sum have on
// this machine: the AVX2 ones and, where the CPU has AVX-512, chacha16
// and poly8Blocks.
func asmPaths(t *testing.T, f func(t *testing.T)) {
	saved := useAVX512
	defer func() { useAVX512 = saved }()
	for _, on := range []bool{false, true} {
		t.Run(pathName(on), func(t *testing.T) {
			if on && !saved {
				t.Skip("this CPU has no AVX-512F, so chacha16 and poly8Blocks cannot run")
			}
			useAVX512 = on
			f(t)
		})
	}
}

// benchPaths runs f as a sub-benchmark for each path asmPaths checks.
func benchPaths(b *testing.B, f func(b *testing.B)) {
	saved := useAVX512
	defer func() { useAVX512 = saved }()
	for _, on := range []bool{false, true} {
		if on && !saved {
			continue
		}
		b.Run(pathName(on), func(b *testing.B) {
			useAVX512 = on
			f(b)
		})
	}
}

func pathName(avx512 bool) string {
	if avx512 {
		return "avx512"
	}
	return "avx2"
}

func TestChachaXORMatchesPackage(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		var key [32]byte
		for _, n := range testLengths(r) {
			for i := range key {
				key[i] = byte(r.Uint32())
			}
			seq := []uint32{0, 1, r.Uint32(), 0xffffffff}[n%4]
			// The last counter is the highest whose blocks all stay
			// under 2^32 on chacha16's path.
			for _, counter := range []uint64{0, 1, uint64(r.IntN(5000)), 1<<32 - 16 - uint64(n/64)} {
				src := make([]byte, n)
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				want := make([]byte, n)
				refXOR(want, src, &key, seq, counter)
				got := make([]byte, n)
				chachaXOR(got, src, &key, seq, counter)
				if !bytes.Equal(got, want) {
					t.Fatalf("length %d, seq %d, counter %d: keystream differs", n, seq, counter)
				}
				chachaXOR(src, src, &key, seq, counter) // in place
				if !bytes.Equal(src, want) {
					t.Fatalf("length %d, seq %d, counter %d: in-place keystream differs", n, seq, counter)
				}
			}
		}
	})
}

func TestPoly1305MatchesPackage(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		var key [32]byte
		for _, n := range testLengths(r) {
			for i := range key {
				key[i] = byte(r.Uint32())
			}
			msg := make([]byte, n)
			for i := range msg {
				msg[i] = byte(r.Uint32())
			}
			checkPoly1305(t, msg, &key)
		}
	})
}

// TestPoly1305Extremes: the largest limbs the arithmetic can meet, where
// a missed carry shows. Keys with every bit of r that clamping leaves and
// every bit of s set, or none; messages of all ones (every block's limbs
// at their largest) or of zeros, at every length around the 128-byte
// chunks of poly8Blocks.
func TestPoly1305Extremes(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		keys := [][32]byte{{}, {}, {}}
		for i := range 32 {
			keys[0][i] = 0xff
			keys[1][i] = 0xff * byte(i/16) // r = 0, s all ones
			keys[2][i] = 0xff * byte(1-i/16)
		}
		for _, fill := range []byte{0xff, 0x00, 0x80} {
			msg := bytes.Repeat([]byte{fill}, 4*1024+200)
			for _, key := range keys {
				for n := 0; n <= len(msg); n++ {
					checkPoly1305(t, msg[:n], &key)
				}
			}
		}
	})
}

// checkPoly1305 checks poly1305Sum and poly1305Verify on msg against
// package poly1305.
func checkPoly1305(t *testing.T, msg []byte, key *[32]byte) {
	t.Helper()
	n := len(msg)
	var want, got [16]byte
	poly1305.Sum(&want, msg, key)
	poly1305Sum(&got, msg, key)
	if got != want {
		t.Fatalf("length %d, key %x: tag %x, want %x", n, *key, got, want)
	}
	if !poly1305Verify(&want, msg, key) {
		t.Fatalf("length %d: the right tag does not verify", n)
	}
	want[n%16] ^= 1 << (n % 8)
	if poly1305Verify(&want, msg, key) {
		t.Fatalf("length %d: a wrong tag verifies", n)
	}
}

// TestChachaCipherRoundTrip: packets written by the cipher read back, and
// a flipped bit anywhere is a MAC failure.
func TestChachaCipherRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 64)
	w, _ := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
	rd, _ := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
	r := rand.New(rand.NewPCG(5, 6))
	for seq, n := range []int{1, 7, 64, 1000, 32768, 35000} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(r.Uint32())
		}
		var wire bytes.Buffer
		if err := w.writeCipherPacket(uint32(seq), &wire, zeroReader{}, payload); err != nil {
			t.Fatal(err)
		}
		raw := bytes.Clone(wire.Bytes())
		got, err := rd.readCipherPacket(uint32(seq), &wire)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("%d bytes: read back %d bytes, %v", n, len(got), err)
		}
		raw[len(raw)/2] ^= 0x40
		if _, err := rd.readCipherPacket(uint32(seq), bytes.NewReader(raw)); err == nil {
			t.Fatalf("%d bytes: a corrupted packet was accepted", n)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BenchmarkChachaXOR: the keystream of one packet's payload, from block 1
// as the cipher uses it, on each path: a keystroke, a small packet and a
// full 32 KiB channel data packet.
func BenchmarkChachaXOR(b *testing.B) {
	var key [32]byte
	benchPaths(b, func(b *testing.B) {
		for _, n := range []int{48, 1040, 32784} {
			buf := make([]byte, n)
			b.Run(fmt.Sprint(n), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					chachaXOR(buf, buf, &key, 3, 1)
				}
			})
		}
	})
}

// BenchmarkPoly1305: the MAC of one packet on each path: a keystroke, a
// small packet and a full 32 KiB channel data packet (with its length).
func BenchmarkPoly1305(b *testing.B) {
	var key [32]byte
	var tag [16]byte
	benchPaths(b, func(b *testing.B) {
		for _, n := range []int{48, 1044, 4100, 32788} {
			msg := make([]byte, n)
			b.Run(fmt.Sprint(n), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					poly1305Sum(&tag, msg, &key)
				}
			})
		}
	})
}

// BenchmarkChachaPacket: one 32 KiB channel data packet through the whole
// chacha20-poly1305 cipher on each path, sealed as the bastion sends
// console output and opened in a pooled buffer as it reads a client's
// data.
func BenchmarkChachaPacket(b *testing.B) {
	key := bytes.Repeat([]byte{9}, 64)
	payload := make([]byte, 32768+9) // a channel data packet's payload
	benchPaths(b, func(b *testing.B) {
		w, _ := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
		rd, _ := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
		b.Run("seal", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.(sealCipher).sealPacket(1, zeroReader{}, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		sealed, _ := w.(sealCipher).sealPacket(1, zeroReader{}, payload)
		sealed = bytes.Clone(sealed)
		b.Run("open", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			var rb readBuffer
			r := bytes.NewReader(sealed)
			for b.Loop() {
				r.Reset(sealed)
				rb.pooled = nil
				if _, _, err := rd.(intoCipher).readCipherPacketInto(1, r, &rb); err != nil {
					b.Fatal(err)
				}
				packetPool.Put(rb.pooled)
			}
		})
	})
}
