// xenbastion patch: see third_party/README.md.

//go:build !purego

#include "textflag.h"

// Poly1305 over eight interleaved streams of blocks at once: 64-bit lane
// L of Zi holds limb i (26 bits, base 2^26) of accumulator L. Each step
// takes 128 bytes, eight 16-byte blocks, and does H = H*r^8 + M in every
// lane; poly1305Sum8 (poly8_amd64.go) combines the lanes.

// Product of the five limbs of H (Z0-Z4) and r^8 (r: Z5-Z9, 5*r for limbs
// 1-4: Z10-Z13) into Z20-Z24, before carrying. A limb of H stays under
// 2^27, of r^8 at most 2^26, so each of the 25 products is under 2^56 and
// each sum under 2^59.
#define MULR8 \
	VPMULUDQ Z5, Z0, Z20; VPMULUDQ Z6, Z0, Z21; VPMULUDQ Z7, Z0, Z22; VPMULUDQ Z8, Z0, Z23; VPMULUDQ Z9, Z0, Z24; \
	VPMULUDQ Z13, Z1, Z25; VPMULUDQ Z5, Z1, Z26; VPMULUDQ Z6, Z1, Z27; VPMULUDQ Z7, Z1, Z28; VPMULUDQ Z8, Z1, Z29; \
	VPADDQ Z25, Z20, Z20; VPADDQ Z26, Z21, Z21; VPADDQ Z27, Z22, Z22; VPADDQ Z28, Z23, Z23; VPADDQ Z29, Z24, Z24; \
	VPMULUDQ Z12, Z2, Z25; VPMULUDQ Z13, Z2, Z26; VPMULUDQ Z5, Z2, Z27; VPMULUDQ Z6, Z2, Z28; VPMULUDQ Z7, Z2, Z29; \
	VPADDQ Z25, Z20, Z20; VPADDQ Z26, Z21, Z21; VPADDQ Z27, Z22, Z22; VPADDQ Z28, Z23, Z23; VPADDQ Z29, Z24, Z24; \
	VPMULUDQ Z11, Z3, Z25; VPMULUDQ Z12, Z3, Z26; VPMULUDQ Z13, Z3, Z27; VPMULUDQ Z5, Z3, Z28; VPMULUDQ Z6, Z3, Z29; \
	VPADDQ Z25, Z20, Z20; VPADDQ Z26, Z21, Z21; VPADDQ Z27, Z22, Z22; VPADDQ Z28, Z23, Z23; VPADDQ Z29, Z24, Z24; \
	VPMULUDQ Z10, Z4, Z25; VPMULUDQ Z11, Z4, Z26; VPMULUDQ Z12, Z4, Z27; VPMULUDQ Z13, Z4, Z28; VPMULUDQ Z5, Z4, Z29; \
	VPADDQ Z25, Z20, Z20; VPADDQ Z26, Z21, Z21; VPADDQ Z27, Z22, Z22; VPADDQ Z28, Z23, Z23; VPADDQ Z29, Z24, Z24

// Partial carry of Z20-Z24 into Z0-Z4, two chains at once (from limbs 0
// and 3), as poly1305-donna and OpenSSL's vector code do: every limb ends
// under 2^26, limb 1 and limb 4 a little over (by at most the carry into
// them). 2^130 = 5 mod p folds the carry out of limb 4 into limb 0.
#define CARRY \
	VPSRLQ $26, Z20, Z25; VPSRLQ $26, Z23, Z26; VPANDQ Z14, Z20, Z20; VPANDQ Z14, Z23, Z23; \
	VPADDQ Z25, Z21, Z21; VPADDQ Z26, Z24, Z24; \
	VPSRLQ $26, Z21, Z25; VPSRLQ $26, Z24, Z26; VPANDQ Z14, Z21, Z1; VPANDQ Z14, Z24, Z4; \
	VPADDQ Z25, Z22, Z22; VPSLLQ $2, Z26, Z27; VPADDQ Z26, Z20, Z20; VPADDQ Z27, Z20, Z20; \
	VPSRLQ $26, Z22, Z25; VPSRLQ $26, Z20, Z26; VPANDQ Z14, Z22, Z2; VPANDQ Z14, Z20, Z0; \
	VPADDQ Z25, Z23, Z23; VPADDQ Z26, Z1, Z1; \
	VPSRLQ $26, Z23, Z25; VPANDQ Z14, Z23, Z3; VPADDQ Z25, Z4, Z4

// func poly8Blocks(h *[5][8]uint64, r8 *[9]uint64, msg *byte, chunks int)
//
// For each of chunks 128-byte chunks of msg: H = H*r^8 + M, lane by lane.
// r8 holds the limbs of r^8, then 5 times limbs 1-4. The lane of each
// block (lane L: block L/2 + 4*(L%2) of the chunk) is how VPUNPCKLQDQ
// and VPUNPCKHQDQ leave them.
TEXT ·poly8Blocks(SB), NOSPLIT, $0-32
	MOVQ h+0(FP), DI
	MOVQ r8+8(FP), SI
	MOVQ msg+16(FP), DX
	MOVQ chunks+24(FP), CX
	TESTQ CX, CX
	JZ   done

	VMOVDQU64 0(DI), Z0
	VMOVDQU64 64(DI), Z1
	VMOVDQU64 128(DI), Z2
	VMOVDQU64 192(DI), Z3
	VMOVDQU64 256(DI), Z4
	VPBROADCASTQ 0(SI), Z5
	VPBROADCASTQ 8(SI), Z6
	VPBROADCASTQ 16(SI), Z7
	VPBROADCASTQ 24(SI), Z8
	VPBROADCASTQ 32(SI), Z9
	VPBROADCASTQ 40(SI), Z10
	VPBROADCASTQ 48(SI), Z11
	VPBROADCASTQ 56(SI), Z12
	VPBROADCASTQ 64(SI), Z13
	MOVQ $0x3ffffff, AX
	VPBROADCASTQ AX, Z14
	MOVQ $0x1000000, AX // 2^128 in limb 4: the bit after each whole block
	VPBROADCASTQ AX, Z15

loop:
	MULR8
	CARRY

	// The chunk's eight blocks: low halves into Z16, high halves into
	// Z17, then split into limbs Z16-Z19 and Z25, and added to H.
	VMOVDQU64 0(DX), Z18
	VMOVDQU64 64(DX), Z19
	VPUNPCKLQDQ Z19, Z18, Z16
	VPUNPCKHQDQ Z19, Z18, Z17
	VPSRLQ $26, Z16, Z18
	VPSRLQ $52, Z16, Z19
	VPSLLQ $12, Z17, Z25
	VPORQ  Z25, Z19, Z19
	VPSRLQ $14, Z17, Z25
	VPSRLQ $40, Z17, Z17
	VPANDQ Z14, Z16, Z16
	VPANDQ Z14, Z18, Z18
	VPANDQ Z14, Z19, Z19
	VPANDQ Z14, Z25, Z25
	VPORQ  Z15, Z17, Z17
	VPADDQ Z16, Z0, Z0
	VPADDQ Z18, Z1, Z1
	VPADDQ Z19, Z2, Z2
	VPADDQ Z25, Z3, Z3
	VPADDQ Z17, Z4, Z4

	ADDQ $128, DX
	DECQ CX
	JNZ  loop

	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	VMOVDQU64 Z4, 256(DI)
	VZEROUPPER

done:
	RET
