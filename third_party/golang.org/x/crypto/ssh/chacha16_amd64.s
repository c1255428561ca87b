// xenbastion patch: see third_party/README.md.

//go:build !purego

#include "textflag.h"

// Sixteen ChaCha20 blocks at once: register Zi holds state word i of the
// sixteen blocks, one per 32-bit lane (OpenSSL's "16x" layout). AVX-512F
// rotates a lane in one instruction (VPROLD).

#define QR(a, b, c, d) \
	VPADDD b, a, a; VPXORD a, d, d; VPROLD $16, d, d; \
	VPADDD d, c, c; VPXORD c, b, b; VPROLD $12, b, b; \
	VPADDD b, a, a; VPXORD a, d, d; VPROLD $8, d, d; \
	VPADDD d, c, c; VPXORD c, b, b; VPROLD $7, b, b

// Four quarter rounds interleaved, step by step, so that they overlap.
#define QR4(a0, b0, c0, d0, a1, b1, c1, d1, a2, b2, c2, d2, a3, b3, c3, d3) \
	VPADDD b0, a0, a0; VPADDD b1, a1, a1; VPADDD b2, a2, a2; VPADDD b3, a3, a3; \
	VPXORD a0, d0, d0; VPXORD a1, d1, d1; VPXORD a2, d2, d2; VPXORD a3, d3, d3; \
	VPROLD $16, d0, d0; VPROLD $16, d1, d1; VPROLD $16, d2, d2; VPROLD $16, d3, d3; \
	VPADDD d0, c0, c0; VPADDD d1, c1, c1; VPADDD d2, c2, c2; VPADDD d3, c3, c3; \
	VPXORD c0, b0, b0; VPXORD c1, b1, b1; VPXORD c2, b2, b2; VPXORD c3, b3, b3; \
	VPROLD $12, b0, b0; VPROLD $12, b1, b1; VPROLD $12, b2, b2; VPROLD $12, b3, b3; \
	VPADDD b0, a0, a0; VPADDD b1, a1, a1; VPADDD b2, a2, a2; VPADDD b3, a3, a3; \
	VPXORD a0, d0, d0; VPXORD a1, d1, d1; VPXORD a2, d2, d2; VPXORD a3, d3, d3; \
	VPROLD $8, d0, d0; VPROLD $8, d1, d1; VPROLD $8, d2, d2; VPROLD $8, d3, d3; \
	VPADDD d0, c0, c0; VPADDD d1, c1, c1; VPADDD d2, c2, c2; VPADDD d3, c3, c3; \
	VPXORD c0, b0, b0; VPXORD c1, b1, b1; VPXORD c2, b2, b2; VPXORD c3, b3, b3; \
	VPROLD $7, b0, b0; VPROLD $7, b1, b1; VPROLD $7, b2, b2; VPROLD $7, b3, b3

// Within each 128-bit lane, turn four registers of one word each (of four
// blocks) into four registers of four words each (of one block).
#define TRANSPOSE4(a, b, c, d) \
	VPUNPCKLDQ b, a, Z17; VPUNPCKHDQ b, a, Z18; \
	VPUNPCKLDQ d, c, Z19; VPUNPCKHDQ d, c, Z20; \
	VPUNPCKLQDQ Z19, Z17, a; VPUNPCKHQDQ Z19, Z17, b; \
	VPUNPCKLQDQ Z20, Z18, c; VPUNPCKHQDQ Z20, Z18, d

// Gather the 128-bit lanes of four such registers into the four whole
// blocks they hold, XOR them into src and store them to dst. r0..r3 hold
// words 0-3, 4-7, 8-11 and 12-15; the blocks are k, 4+k, 8+k and 12+k,
// at byte offsets o0..o3.
#define STORE4(r0, r1, r2, r3, o0, o1, o2, o3) \
	VSHUFI32X4 $0x44, r1, r0, Z17; VSHUFI32X4 $0xee, r1, r0, Z18; \
	VSHUFI32X4 $0x44, r3, r2, Z19; VSHUFI32X4 $0xee, r3, r2, Z20; \
	VSHUFI32X4 $0x88, Z19, Z17, r0; VSHUFI32X4 $0xdd, Z19, Z17, r1; \
	VSHUFI32X4 $0x88, Z20, Z18, r2; VSHUFI32X4 $0xdd, Z20, Z18, r3; \
	VPXORD o0(SI), r0, r0; VMOVDQU32 r0, o0(DI); \
	VPXORD o1(SI), r1, r1; VMOVDQU32 r1, o1(DI); \
	VPXORD o2(SI), r2, r2; VMOVDQU32 r2, o2(DI); \
	VPXORD o3(SI), r3, r3; VMOVDQU32 r3, o3(DI)

// func chacha16(state *[16]uint32, dst, src *byte, chunks int)
TEXT ·chacha16(SB), NOSPLIT, $0-32
	MOVQ state+0(FP), AX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	MOVQ chunks+24(FP), CX
	TESTQ CX, CX
	JLE done

	// Z16: the counters of the chunk's blocks; Z21: 16 in every lane.
	VPBROADCASTD 48(AX), Z16
	VPADDD ·iota16<>(SB), Z16, Z16
	VPBROADCASTD ·sixteen<>(SB), Z21

chunk:
	VPBROADCASTD 0(AX), Z0
	VPBROADCASTD 4(AX), Z1
	VPBROADCASTD 8(AX), Z2
	VPBROADCASTD 12(AX), Z3
	VPBROADCASTD 16(AX), Z4
	VPBROADCASTD 20(AX), Z5
	VPBROADCASTD 24(AX), Z6
	VPBROADCASTD 28(AX), Z7
	VPBROADCASTD 32(AX), Z8
	VPBROADCASTD 36(AX), Z9
	VPBROADCASTD 40(AX), Z10
	VPBROADCASTD 44(AX), Z11
	VMOVDQA32 Z16, Z12
	VPBROADCASTD 52(AX), Z13
	VPBROADCASTD 56(AX), Z14
	VPBROADCASTD 60(AX), Z15

	MOVQ $10, DX
double:
	QR4(Z0, Z4, Z8, Z12, Z1, Z5, Z9, Z13, Z2, Z6, Z10, Z14, Z3, Z7, Z11, Z15)
	QR4(Z0, Z5, Z10, Z15, Z1, Z6, Z11, Z12, Z2, Z7, Z8, Z13, Z3, Z4, Z9, Z14)
	DECQ DX
	JNZ double

	VPADDD.BCST 0(AX), Z0, Z0
	VPADDD.BCST 4(AX), Z1, Z1
	VPADDD.BCST 8(AX), Z2, Z2
	VPADDD.BCST 12(AX), Z3, Z3
	VPADDD.BCST 16(AX), Z4, Z4
	VPADDD.BCST 20(AX), Z5, Z5
	VPADDD.BCST 24(AX), Z6, Z6
	VPADDD.BCST 28(AX), Z7, Z7
	VPADDD.BCST 32(AX), Z8, Z8
	VPADDD.BCST 36(AX), Z9, Z9
	VPADDD.BCST 40(AX), Z10, Z10
	VPADDD.BCST 44(AX), Z11, Z11
	VPADDD Z16, Z12, Z12
	VPADDD.BCST 52(AX), Z13, Z13
	VPADDD.BCST 56(AX), Z14, Z14
	VPADDD.BCST 60(AX), Z15, Z15

	TRANSPOSE4(Z0, Z1, Z2, Z3)
	TRANSPOSE4(Z4, Z5, Z6, Z7)
	TRANSPOSE4(Z8, Z9, Z10, Z11)
	TRANSPOSE4(Z12, Z13, Z14, Z15)
	STORE4(Z0, Z4, Z8, Z12, 0, 256, 512, 768)
	STORE4(Z1, Z5, Z9, Z13, 64, 320, 576, 832)
	STORE4(Z2, Z6, Z10, Z14, 128, 384, 640, 896)
	STORE4(Z3, Z7, Z11, Z15, 192, 448, 704, 960)

	VPADDD Z21, Z16, Z16
	ADDQ $1024, SI
	ADDQ $1024, DI
	DECQ CX
	JNZ chunk

	VZEROUPPER
done:
	RET

DATA ·iota16<>+0x00(SB)/4, $0
DATA ·iota16<>+0x04(SB)/4, $1
DATA ·iota16<>+0x08(SB)/4, $2
DATA ·iota16<>+0x0c(SB)/4, $3
DATA ·iota16<>+0x10(SB)/4, $4
DATA ·iota16<>+0x14(SB)/4, $5
DATA ·iota16<>+0x18(SB)/4, $6
DATA ·iota16<>+0x1c(SB)/4, $7
DATA ·iota16<>+0x20(SB)/4, $8
DATA ·iota16<>+0x24(SB)/4, $9
DATA ·iota16<>+0x28(SB)/4, $10
DATA ·iota16<>+0x2c(SB)/4, $11
DATA ·iota16<>+0x30(SB)/4, $12
DATA ·iota16<>+0x34(SB)/4, $13
DATA ·iota16<>+0x38(SB)/4, $14
DATA ·iota16<>+0x3c(SB)/4, $15
GLOBL ·iota16<>(SB), RODATA|NOPTR, $64

DATA ·sixteen<>+0x00(SB)/4, $16
GLOBL ·sixteen<>(SB), RODATA|NOPTR, $4
