// xenbastion patch: see third_party/README.md.

//go:build amd64 && !purego

package ssh

import (
	"encoding/binary"
	"math/bits"
)

// poly8Min is the shortest message poly1305Sum gives poly1305Sum8. Its
// set-up and the combination of its lanes cost some twenty scalar
// multiplications, about 0.4 us here, so below some 4 KiB
// aead/poly1305's AVX2 code is as fast or faster (go test -bench
// Poly1305). A 32 KiB channel data packet takes 5.1-5.4 us instead of
// 6.7-7.8.
const poly8Min = 4096

// poly8Blocks does H = H*r^8 + M for each of chunks 128-byte chunks of
// msg, in eight lanes of one block each (poly8_amd64.s).
//
//go:noescape
func poly8Blocks(h *[5][8]uint64, r8 *[9]uint64, msg *byte, chunks int)

// A poly1305Elem is a number mod 2^130-5 in five 26-bit limbs, each may
// be a little over 26 bits (poly1305-donna's representation). Poly1305 is
// written out here because package poly1305 keeps its state to itself:
// the lanes poly8Blocks leaves must be combined, and the message's tail
// taken, from outside it.
type poly1305Elem [5]uint64

const limb26 = 1<<26 - 1

// mul sets e to e*r mod 2^130-5, carried so that every limb is under 2^26
// but limb 1, which may be a little over (by under 2^14). e's limbs must
// be under 2^32 and r's under 2^27, so that no sum of products passes
// 2^64.
func (e *poly1305Elem) mul(r *poly1305Elem) {
	h0, h1, h2, h3, h4 := e[0], e[1], e[2], e[3], e[4]
	r0, r1, r2, r3, r4 := r[0], r[1], r[2], r[3], r[4]
	s1, s2, s3, s4 := r1*5, r2*5, r3*5, r4*5
	d0 := h0*r0 + h1*s4 + h2*s3 + h3*s2 + h4*s1
	d1 := h0*r1 + h1*r0 + h2*s4 + h3*s3 + h4*s2
	d2 := h0*r2 + h1*r1 + h2*r0 + h3*s4 + h4*s3
	d3 := h0*r3 + h1*r2 + h2*r1 + h3*r0 + h4*s4
	d4 := h0*r4 + h1*r3 + h2*r2 + h3*r1 + h4*r0
	d1 += d0 >> 26
	d2 += d1 >> 26
	d3 += d2 >> 26
	d4 += d3 >> 26
	h0 = d0&limb26 + d4>>26*5
	h1 = d1&limb26 + h0>>26
	e[0], e[1], e[2], e[3], e[4] = h0&limb26, h1, d2&limb26, d3&limb26, d4&limb26
}

// add sets e to e+f, limb by limb, without carrying.
func (e *poly1305Elem) add(f *poly1305Elem) {
	for i := range e {
		e[i] += f[i]
	}
}

// carry carries e's limbs, each under 2^58, so that each is under 2^26
// but limb 1, which the last carry may take a little over.
func (e *poly1305Elem) carry() {
	e[1] += e[0] >> 26
	e[0] &= limb26
	e[2] += e[1] >> 26
	e[1] &= limb26
	e[3] += e[2] >> 26
	e[2] &= limb26
	e[4] += e[3] >> 26
	e[3] &= limb26
	e[0] += e[4] >> 26 * 5
	e[4] &= limb26
	e[1] += e[0] >> 26
	e[0] &= limb26
}

// block adds the 16-byte little-endian block b, and hibit (1<<24 for a
// whole block: its 2^128) to limb 4.
func (e *poly1305Elem) block(b []byte, hibit uint64) {
	lo := binary.LittleEndian.Uint64(b[0:8])
	hi := binary.LittleEndian.Uint64(b[8:16])
	e[0] += lo & limb26
	e[1] += lo >> 26 & limb26
	e[2] += (lo>>52 | hi<<12) & limb26
	e[3] += hi >> 14 & limb26
	e[4] += hi>>40 | hibit
}

// poly1305Sum8 is poly1305Sum with poly8Blocks for the whole 128-byte
// chunks of msg, which must hold at least one.
func poly1305Sum8(out *[16]byte, msg []byte, key *[32]byte) {
	// r, clamped as the algorithm requires, in limbs.
	var r poly1305Elem
	r.block(key[:16], 0)
	r[0] &= 0x3ffffff
	r[1] &= 0x3ffff03
	r[2] &= 0x3ffc0ff
	r[3] &= 0x3f03fff
	r[4] &= 0x00fffff

	// pow[i] is r^(i+1), found three multiplications deep rather than
	// seven: for a short message the set-up shows.
	var pow [8]poly1305Elem
	pow[0] = r
	for _, ij := range [][2]int{{0, 0}, {1, 0}, {1, 1}, {3, 0}, {3, 1}, {3, 2}, {3, 3}} {
		i, j := ij[0], ij[1]
		pow[i+j+1] = pow[i]
		pow[i+j+1].mul(&pow[j])
		pow[i+j+1].carry()
	}
	var r8 [9]uint64
	copy(r8[:5], pow[7][:])
	for i := 1; i < 5; i++ {
		r8[4+i] = pow[7][i] * 5
	}

	chunks := len(msg) / 128
	var lanes [5][8]uint64
	poly8Blocks(&lanes, &r8, &msg[0], chunks)
	msg = msg[128*chunks:]

	// Lane L holds the blocks L/2 + 4*(L%2) of each chunk: block b of the
	// last chunk still needs r^(8-b), the earlier ones have had theirs.
	var h poly1305Elem
	for l := range 8 {
		var e poly1305Elem
		for i := range e {
			e[i] = lanes[i][l]
		}
		e.mul(&pow[7-(l/2+4*(l%2))])
		h.add(&e)
	}
	h.carry()

	// The tail, block by block; the last part block gets a 1 byte after
	// it instead of the 2^128 bit.
	for ; len(msg) >= 16; msg = msg[16:] {
		h.block(msg, 1<<24)
		h.mul(&r)
	}
	if len(msg) > 0 {
		var b [16]byte
		copy(b[:], msg)
		b[len(msg)] = 1
		h.block(b[:], 0)
		h.mul(&r)
	}
	h.carry()

	// h mod 2^130-5: h is less than 2p here (under 2^130 + 2^52), so h - p
	// is the answer if it is not negative. Chosen without a branch.
	g0 := h[0] + 5
	g1 := h[1] + g0>>26
	g2 := h[2] + g1>>26
	g3 := h[3] + g2>>26
	g4 := h[4] + g3>>26 - 1<<26
	useG := (g4 >> 63) - 1 // all ones if g4 did not go below zero
	h[0] = h[0]&^useG | g0&limb26&useG
	h[1] = h[1]&^useG | g1&limb26&useG
	h[2] = h[2]&^useG | g2&limb26&useG
	h[3] = h[3]&^useG | g3&limb26&useG
	h[4] = h[4]&^useG | g4&limb26&useG

	// The tag is h + s mod 2^128. The limbs are added into place rather
	// than ORed, so that a limb 1 the last carry left at 2^26 (a case no
	// test input has been found to reach) still comes out right.
	lo, c := bits.Add64(h[0]+h[1]<<26, h[2]<<52, 0)
	hi := h[2]>>12 + h[3]<<14 + h[4]<<40 + c
	lo, c = bits.Add64(lo, binary.LittleEndian.Uint64(key[16:24]), 0)
	hi, _ = bits.Add64(hi, binary.LittleEndian.Uint64(key[24:32]), c)
	binary.LittleEndian.PutUint64(out[0:8], lo)
	binary.LittleEndian.PutUint64(out[8:16], hi)
}
