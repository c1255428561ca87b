// xenbastion patch: the amd64 keystream paths' own checks.

//go:build amd64 && !purego

package ssh

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/aead/chacha20/chacha"
	"golang.org/x/crypto/internal/poly1305"
)

// chachaAllocs is what reading a chacha20-poly1305 packet allocates: nothing
// with chacha16; with aead's AVX2 code, the cipher that starts a keystream
// past block 0.
func chachaAllocs() float64 {
	if useAVX512 {
		return 0
	}
	return 1
}

// TestChachaXORCounterCarry: a keystream whose block counter passes 2^32
// carries into the counter's high word. chacha16 does not carry, so
// chachaXOR must not give it such a keystream; package chacha20 cannot
// count past 2^32 at all, so the reference is github.com/aead/chacha20.
func TestChachaXORCounterCarry(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		var key [32]byte
		for i := range key {
			key[i] = byte(3 * i)
		}
		for _, n := range []int{1, 64, 1000, 1024, 1025, 5000, 32768} {
			for back := uint64(1); back <= 40+uint64(n/64); back += 3 {
				counter := 1<<32 - back
				src := bytes.Repeat([]byte{0x5a}, n)
				nonce := sshNonce(9)
				c, err := chacha.NewCipher(nonce[:], key[:], 20)
				if err != nil {
					t.Fatal(err)
				}
				c.SetCounter(counter)
				want := make([]byte, n)
				c.XORKeyStream(want, src)
				got := make([]byte, n)
				chachaXOR(got, src, &key, 9, counter)
				if !bytes.Equal(got, want) {
					t.Fatalf("length %d from counter 2^32-%d: keystream differs", n, back)
				}
			}
		}
	})
}

// TestChachaXORBounds: chachaXOR refuses an output shorter than its input,
// even one with room in its capacity, and computes no block past 2^64-1.
func TestChachaXORBounds(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		var key [32]byte
		backing := make([]byte, 4096)
		func() {
			defer func() {
				if recover() == nil {
					t.Error("a 10-byte output for 100 bytes of input did not panic")
				}
			}()
			chachaXOR(backing[:10], make([]byte, 100), &key, 1, 1)
		}()
		if !bytes.Equal(backing[10:], make([]byte, len(backing)-10)) {
			t.Error("chachaXOR wrote past its output's length")
		}
	})
	// A counter whose sum with the length wraps a uint64 must not reach
	// chacha16, which would take it for a small one: chachaXOR gives
	// aead's keystream, or panics as aead does at the very end.
	saved := useAVX512
	defer func() { useAVX512 = saved }()
	var key [32]byte
	for _, counter := range []uint64{1<<64 - 1, 1<<64 - 17, 1 << 32} {
		ref := func(dst []byte) {
			nonce := sshNonce(3)
			c, err := chacha.NewCipher(nonce[:], key[:], 20)
			if err != nil {
				t.Fatal(err)
			}
			c.SetCounter(counter)
			c.XORKeyStream(dst, dst)
		}
		want, wantPanic := keystreamOrPanic(ref)
		got, gotPanic := keystreamOrPanic(func(dst []byte) { chachaXOR(dst, dst, &key, 3, counter) })
		if gotPanic != wantPanic || !bytes.Equal(got, want) {
			t.Errorf("counter %#x: panicked %v, want %v; keystream equal to aead's: %v", counter, gotPanic, wantPanic, bytes.Equal(got, want))
		}
	}
}

// keystreamOrPanic returns 64 bytes of keystream from f, or whether it
// panicked.
func keystreamOrPanic(f func(dst []byte)) (ks []byte, panicked bool) {
	defer func() {
		if recover() != nil {
			ks, panicked = nil, true
		}
	}()
	ks = make([]byte, 64)
	f(ks)
	return ks, false
}

// TestPoly1305Sum8 checks poly1305Sum8 at every length it can take up to
// past poly8Min, not only those poly1305Sum gives it: every number of
// chunks up to 40 with every tail, against package poly1305, with random
// keys and messages and with the extremes of TestPoly1305Extremes.
func TestPoly1305Sum8(t *testing.T) {
	if !useAVX512 {
		t.Skip("this CPU has no AVX-512F, so poly8Blocks cannot run")
	}
	r := rand.New(rand.NewPCG(7, 8))
	msg := make([]byte, 40*128+127)
	ones := bytes.Repeat([]byte{0xff}, len(msg))
	var key, keyOnes [32]byte
	for i := range keyOnes {
		keyOnes[i] = 0xff
	}
	for n := 128; n <= len(msg); n++ {
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		for i := range msg[:n] {
			msg[i] = byte(r.Uint32())
		}
		for _, c := range []struct {
			msg []byte
			key *[32]byte
		}{{msg[:n], &key}, {ones[:n], &keyOnes}, {ones[:n], &key}} {
			var want, got [16]byte
			poly1305.Sum(&want, c.msg, c.key)
			poly1305Sum8(&got, c.msg, c.key)
			if got != want {
				t.Fatalf("length %d, key %x: tag %x, want %x", n, *c.key, got, want)
			}
		}
	}
}

// TestPoly1305Sum8Reduction checks the final reduction mod p = 2^130-5 at
// its edges, which random messages reach with a chance of about 2^-100.
// Each message's last block is solved for, with math/big, so that the
// accumulator before s is added is a chosen value near 0, p, 2^128, 2^129
// or 3*2^128; the block lies in a vector lane (a length that is a
// multiple of 128) or in the scalar tail.
func TestPoly1305Sum8Reduction(t *testing.T) {
	if !useAVX512 {
		t.Skip("this CPU has no AVX-512F, so poly8Blocks cannot run")
	}
	one := big.NewInt(1)
	p := new(big.Int).Sub(new(big.Int).Lsh(one, 130), big.NewInt(5))
	two128 := new(big.Int).Lsh(one, 128)
	var targets []*big.Int
	for d := range int64(7) {
		dd := big.NewInt(d)
		targets = append(targets, dd,
			new(big.Int).Sub(p, new(big.Int).Add(dd, one)),
			new(big.Int).Sub(two128, dd),
			new(big.Int).Add(two128, dd),
			new(big.Int).Sub(new(big.Int).Lsh(one, 129), dd),
			new(big.Int).Sub(new(big.Int).Mul(two128, big.NewInt(3)), dd))
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{4096, 4096 + 16, 4096 + 48, 4096 + 112} {
		for _, target := range targets {
			for _, s := range []byte{0x00, 0xff, 0x5a} {
				key, msg := poly1305Ending(r, n, target, s, p)
				if acc := poly1305Acc(msg, poly1305R(&key), p); acc.Cmp(target) != 0 {
					t.Fatalf("length %d: the solved message ends at %x, want %x", n, acc, target)
				}
				var want, got [16]byte
				poly1305.Sum(&want, msg, &key)
				poly1305Sum8(&got, msg, &key)
				if got != want {
					t.Fatalf("length %d, accumulator %x, s %#x: tag %x, want %x", n, target, s, got, want)
				}
			}
		}
	}
}

// poly1305Ending returns a key with s all s-bytes and an n-byte message
// whose last, whole block makes Poly1305's accumulator end at target
// (under p). Random r and prefixes are tried until the block that does
// fits in 128 bits.
func poly1305Ending(r *rand.Rand, n int, target *big.Int, s byte, p *big.Int) ([32]byte, []byte) {
	two128 := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		var key [32]byte
		for i := range 16 {
			key[i] = byte(r.Uint32())
		}
		for i := 16; i < 32; i++ {
			key[i] = s
		}
		msg := make([]byte, n)
		for i := range msg[:n-16] {
			msg[i] = byte(r.Uint32())
		}
		rr := poly1305R(&key)
		if rr.Sign() == 0 {
			continue
		}
		// target = (prefix's accumulator + m + 2^128) * r mod p.
		m := new(big.Int).Mul(target, new(big.Int).ModInverse(rr, p))
		m.Sub(m, poly1305Acc(msg[:n-16], rr, p)).Sub(m, two128).Mod(m, p)
		if m.Cmp(two128) >= 0 {
			continue
		}
		m.FillBytes(msg[n-16:])
		slices.Reverse(msg[n-16:]) // little-endian
		return key, msg
	}
}

// poly1305R is key's r, clamped, as a number.
func poly1305R(key *[32]byte) *big.Int {
	r := bytes.Clone(key[:16])
	for _, i := range []int{3, 7, 11, 15} {
		r[i] &= 15
	}
	for _, i := range []int{4, 8, 12} {
		r[i] &= 252
	}
	slices.Reverse(r)
	return new(big.Int).SetBytes(r)
}

// poly1305Acc is Poly1305's accumulator after msg, mod p, before s.
func poly1305Acc(msg []byte, r, p *big.Int) *big.Int {
	h := new(big.Int)
	for len(msg) > 0 {
		n := min(16, len(msg))
		b := append(bytes.Clone(msg[:n]), 1)
		slices.Reverse(b)
		h.Add(h, new(big.Int).SetBytes(b)).Mul(h, r).Mod(h, p)
		msg = msg[n:]
	}
	return h
}
