// xenbastion patch: see third_party/README.md.

//go:build !purego

#include "textflag.h"

// AES-GCM with VAES and VPCLMULQDQ on 512-bit registers: sixteen blocks at
// once, four to a Z register. GHASH works in the byte-reflected form of
// crypto/aes's gcm_amd64.s (blocks byte-reversed, the key H doubled, the
// reduction by gcmPoly), so that its arithmetic is that of the Go
// standard library's code, four lanes wide.

// bswapMask reverses the bytes of each 128-bit lane: a block to and from
// GHASH's byte-reflected form.
DATA bswapMask<>+0x00(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x08(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x10(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x18(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x20(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x28(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x30(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x38(SB)/8, $0x0001020304050607
GLOBL bswapMask<>(SB), RODATA|NOPTR, $64

// ctrSwap reverses the last 32-bit word of each lane, the big-endian block
// counter, so that VPADDD counts it (and back).
DATA ctrSwap<>+0x00(SB)/8, $0x0706050403020100
DATA ctrSwap<>+0x08(SB)/8, $0x0c0d0e0f0b0a0908
DATA ctrSwap<>+0x10(SB)/8, $0x0706050403020100
DATA ctrSwap<>+0x18(SB)/8, $0x0c0d0e0f0b0a0908
DATA ctrSwap<>+0x20(SB)/8, $0x0706050403020100
DATA ctrSwap<>+0x28(SB)/8, $0x0c0d0e0f0b0a0908
DATA ctrSwap<>+0x30(SB)/8, $0x0706050403020100
DATA ctrSwap<>+0x38(SB)/8, $0x0c0d0e0f0b0a0908
GLOBL ctrSwap<>(SB), RODATA|NOPTR, $64

// ctrLanes adds i to lane i's counter; ctrAdd4 adds 4 to every lane's.
DATA ctrLanes<>+0x00(SB)/8, $0
DATA ctrLanes<>+0x08(SB)/8, $0
DATA ctrLanes<>+0x10(SB)/8, $0
DATA ctrLanes<>+0x18(SB)/8, $0x0000000100000000
DATA ctrLanes<>+0x20(SB)/8, $0
DATA ctrLanes<>+0x28(SB)/8, $0x0000000200000000
DATA ctrLanes<>+0x30(SB)/8, $0
DATA ctrLanes<>+0x38(SB)/8, $0x0000000300000000
GLOBL ctrLanes<>(SB), RODATA|NOPTR, $64

DATA ctrAdd4<>+0x00(SB)/8, $0
DATA ctrAdd4<>+0x08(SB)/8, $0x0000000400000000
DATA ctrAdd4<>+0x10(SB)/8, $0
DATA ctrAdd4<>+0x18(SB)/8, $0x0000000400000000
DATA ctrAdd4<>+0x20(SB)/8, $0
DATA ctrAdd4<>+0x28(SB)/8, $0x0000000400000000
DATA ctrAdd4<>+0x30(SB)/8, $0
DATA ctrAdd4<>+0x38(SB)/8, $0x0000000400000000
GLOBL ctrAdd4<>(SB), RODATA|NOPTR, $64

// gcmPoly is the reduction constant of gcm_amd64.s.
DATA gcmPoly<>+0x00(SB)/8, $0x0000000000000001
DATA gcmPoly<>+0x08(SB)/8, $0xc200000000000000
GLOBL gcmPoly<>(SB), RODATA|NOPTR, $16

// The key schedule steps of crypto/aes's aes_amd64.s (expandKeyAsm), as
// macros. X4's low word must be zero, as there.
#define EXPAND128(rcon) \
	AESKEYGENASSIST $rcon, X0, X1; \
	PSHUFD $0xff, X1, X1; \
	SHUFPS $0x10, X0, X4; \
	PXOR X4, X0; \
	SHUFPS $0x8c, X0, X4; \
	PXOR X4, X0; \
	PXOR X1, X0; \
	MOVUPS X0, (BX); \
	ADDQ $16, BX

#define EXPAND256A(rcon) \
	AESKEYGENASSIST $rcon, X2, X1; \
	PSHUFD $0xff, X1, X1; \
	SHUFPS $0x10, X0, X4; \
	PXOR X4, X0; \
	SHUFPS $0x8c, X0, X4; \
	PXOR X4, X0; \
	PXOR X1, X0; \
	MOVUPS X0, (BX); \
	ADDQ $16, BX

#define EXPAND256B(rcon) \
	AESKEYGENASSIST $rcon, X0, X1; \
	PSHUFD $0xaa, X1, X1; \
	SHUFPS $0x10, X2, X4; \
	PXOR X4, X2; \
	SHUFPS $0x8c, X2, X4; \
	PXOR X4, X2; \
	PXOR X1, X2; \
	MOVUPS X2, (BX); \
	ADDQ $16, BX

// func expandKeyVAES(key *byte, rk *[15][16]byte, rounds int)
TEXT ·expandKeyVAES(SB), NOSPLIT, $0-24
	MOVQ   key+0(FP), AX
	MOVQ   rk+8(FP), BX
	MOVQ   rounds+16(FP), CX
	MOVUPS (AX), X0
	MOVUPS X0, (BX)
	ADDQ   $16, BX
	PXOR   X4, X4
	CMPQ   CX, $10
	JEQ    exp128
	MOVUPS 16(AX), X2
	MOVUPS X2, (BX)
	ADDQ   $16, BX
	EXPAND256A(0x01)
	EXPAND256B(0x01)
	EXPAND256A(0x02)
	EXPAND256B(0x02)
	EXPAND256A(0x04)
	EXPAND256B(0x04)
	EXPAND256A(0x08)
	EXPAND256B(0x08)
	EXPAND256A(0x10)
	EXPAND256B(0x10)
	EXPAND256A(0x20)
	EXPAND256B(0x20)
	EXPAND256A(0x40)
	RET

exp128:
	EXPAND128(0x01)
	EXPAND128(0x02)
	EXPAND128(0x04)
	EXPAND128(0x08)
	EXPAND128(0x10)
	EXPAND128(0x20)
	EXPAND128(0x40)
	EXPAND128(0x80)
	EXPAND128(0x1b)
	EXPAND128(0x36)
	RET

// GFMUL sets a to a·b in GHASH's field (gcm_amd64.s's form), X14 holding
// gcmPoly. t0-t3 are clobbered.
#define GFMUL(a, b, t0, t1, t2, t3) \
	MOVOU     a, t0; \
	PCLMULQDQ $0x00, b, t0; \
	MOVOU     a, t1; \
	PCLMULQDQ $0x11, b, t1; \
	MOVOU     a, t2; \
	PCLMULQDQ $0x01, b, t2; \
	MOVOU     a, t3; \
	PCLMULQDQ $0x10, b, t3; \
	PXOR      t3, t2; \
	MOVOU     t2, t3; \
	PSLLDQ    $8, t3; \
	PSRLDQ    $8, t2; \
	PXOR      t3, t0; \
	PXOR      t2, t1; \
	MOVOU     X14, t2; \
	PCLMULQDQ $0x01, t0, t2; \
	PSHUFD    $78, t0, t0; \
	PXOR      t2, t0; \
	MOVOU     X14, t2; \
	PCLMULQDQ $0x01, t0, t2; \
	PSHUFD    $78, t0, t0; \
	PXOR      t2, t0; \
	PXOR      t1, t0; \
	MOVOU     t0, a

// func gcmInitVAES(htab *[32][16]byte, rk *[15][16]byte, rounds int)
//
// htab[i] = H^(16-i) for i < 16, H = AES(0) in gcm_amd64.s's form. The
// rest of htab is left as it is (zero).
TEXT ·gcmInitVAES(SB), NOSPLIT, $0-24
	MOVQ   htab+0(FP), DI
	MOVQ   rk+8(FP), SI
	MOVQ   rounds+16(FP), CX
	MOVOU  (16*0)(SI), X0
	MOVOU  (16*1)(SI), X1
	AESENC X1, X0
	MOVOU  (16*2)(SI), X1
	AESENC X1, X0
	MOVOU  (16*3)(SI), X1
	AESENC X1, X0
	MOVOU  (16*4)(SI), X1
	AESENC X1, X0
	MOVOU  (16*5)(SI), X1
	AESENC X1, X0
	MOVOU  (16*6)(SI), X1
	AESENC X1, X0
	MOVOU  (16*7)(SI), X1
	AESENC X1, X0
	MOVOU  (16*8)(SI), X1
	AESENC X1, X0
	MOVOU  (16*9)(SI), X1
	AESENC X1, X0
	MOVOU  (16*10)(SI), X1
	CMPQ   CX, $10
	JEQ    initLast
	AESENC X1, X0
	MOVOU  (16*11)(SI), X1
	AESENC X1, X0
	MOVOU  (16*12)(SI), X1
	AESENC X1, X0
	MOVOU  (16*13)(SI), X1
	AESENC X1, X0
	MOVOU  (16*14)(SI), X1

initLast:
	AESENCLAST X1, X0
	MOVOU      bswapMask<>(SB), X15
	MOVOU      gcmPoly<>(SB), X14
	PSHUFB     X15, X0

	// H·2, as gcm_amd64.s has it.
	PSHUFD $0xff, X0, X2
	MOVOU  X0, X3
	PSRAL  $31, X2
	PAND   X14, X2
	PSRLL  $31, X3
	PSLLDQ $4, X3
	PSLLL  $1, X0
	PXOR   X2, X0
	PXOR   X3, X0

	MOVOU X0, (16*15)(DI)
	MOVOU X0, X1
	MOVQ  $(16*14), CX

initLoop:
	GFMUL(X1, X0, X2, X3, X4, X5)
	MOVOU X1, (DI)(CX*1)
	SUBQ  $16, CX
	JGE   initLoop
	RET

// ENC4 and LAST4 take Z0-Z3 through an AES round with round key k.
#define ENC4(k) \
	VAESENC k, Z0, Z0; \
	VAESENC k, Z1, Z1; \
	VAESENC k, Z2, Z2; \
	VAESENC k, Z3, Z3

#define LAST4(k) \
	VAESENCLAST k, Z0, Z0; \
	VAESENCLAST k, Z1, Z1; \
	VAESENCLAST k, Z2, Z2; \
	VAESENCLAST k, Z3, Z3

// KEYSTREAM encrypts the next sixteen counter blocks into Z0-Z3: Z14
// holds the counters of the next four (last word byte-swapped), Z15
// ctrAdd4, Z31 ctrSwap, Z16-Z30 the round keys, R8 the rounds (10 or 14).
#define KEYSTREAM(aes128, done) \
	VPSHUFB Z31, Z14, Z0; \
	VPADDD  Z15, Z14, Z14; \
	VPSHUFB Z31, Z14, Z1; \
	VPADDD  Z15, Z14, Z14; \
	VPSHUFB Z31, Z14, Z2; \
	VPADDD  Z15, Z14, Z14; \
	VPSHUFB Z31, Z14, Z3; \
	VPADDD  Z15, Z14, Z14; \
	VPXORD  Z16, Z0, Z0; \
	VPXORD  Z16, Z1, Z1; \
	VPXORD  Z16, Z2, Z2; \
	VPXORD  Z16, Z3, Z3; \
	ENC4(Z17); \
	ENC4(Z18); \
	ENC4(Z19); \
	ENC4(Z20); \
	ENC4(Z21); \
	ENC4(Z22); \
	ENC4(Z23); \
	ENC4(Z24); \
	ENC4(Z25); \
	CMPQ R8, $10; \
	JEQ  aes128; \
	ENC4(Z26); \
	ENC4(Z27); \
	ENC4(Z28); \
	ENC4(Z29); \
	LAST4(Z30); \
	JMP  done; \
aes128: \
	LAST4(Z26); \
done:

// func ctrVAES(rk *[15][16]byte, rounds int, ctr *[16]byte, dst, src []byte)
//
// XORs src into dst with AES-CTR from counter block *ctr on, counting in
// its last 32 bits (GCM's inc32). dst is at least as long as src.
TEXT ·ctrVAES(SB), NOSPLIT, $0-72
	MOVQ  rk+0(FP), AX
	MOVQ  rounds+8(FP), R8
	MOVQ  ctr+16(FP), BX
	MOVQ  dst_base+24(FP), DI
	MOVQ  src_base+48(FP), SI
	MOVQ  src_len+56(FP), CX
	TESTQ CX, CX
	JZ    ctrRet

	VBROADCASTI32X4 (16*0)(AX), Z16
	VBROADCASTI32X4 (16*1)(AX), Z17
	VBROADCASTI32X4 (16*2)(AX), Z18
	VBROADCASTI32X4 (16*3)(AX), Z19
	VBROADCASTI32X4 (16*4)(AX), Z20
	VBROADCASTI32X4 (16*5)(AX), Z21
	VBROADCASTI32X4 (16*6)(AX), Z22
	VBROADCASTI32X4 (16*7)(AX), Z23
	VBROADCASTI32X4 (16*8)(AX), Z24
	VBROADCASTI32X4 (16*9)(AX), Z25
	VBROADCASTI32X4 (16*10)(AX), Z26
	CMPQ            R8, $10
	JEQ             ctrKeys
	VBROADCASTI32X4 (16*11)(AX), Z27
	VBROADCASTI32X4 (16*12)(AX), Z28
	VBROADCASTI32X4 (16*13)(AX), Z29
	VBROADCASTI32X4 (16*14)(AX), Z30

ctrKeys:
	VMOVDQU64       ctrSwap<>(SB), Z31
	VMOVDQU64       ctrAdd4<>(SB), Z15
	VBROADCASTI32X4 (BX), Z14
	VPSHUFB         Z31, Z14, Z14
	VPADDD          ctrLanes<>(SB), Z14, Z14

ctrLoop:
	CMPQ      CX, $256
	JB        ctrTail
	KEYSTREAM(ctrLoop128, ctrLoopXOR)
	VPXORD    (64*0)(SI), Z0, Z0
	VPXORD    (64*1)(SI), Z1, Z1
	VPXORD    (64*2)(SI), Z2, Z2
	VPXORD    (64*3)(SI), Z3, Z3
	VMOVDQU64 Z0, (64*0)(DI)
	VMOVDQU64 Z1, (64*1)(DI)
	VMOVDQU64 Z2, (64*2)(DI)
	VMOVDQU64 Z3, (64*3)(DI)
	ADDQ      $256, SI
	ADDQ      $256, DI
	SUBQ      $256, CX
	JMP       ctrLoop

ctrTail:
	TESTQ CX, CX
	JZ    ctrDone
	KEYSTREAM(ctrTail128, ctrTailXOR)

ctrTailLoop:
	CMPQ      CX, $64
	JB        ctrTailPart
	VPXORD    (SI), Z0, Z0
	VMOVDQU64 Z0, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DI
	SUBQ      $64, CX
	VMOVDQA64 Z1, Z0
	VMOVDQA64 Z2, Z1
	VMOVDQA64 Z3, Z2
	JMP       ctrTailLoop

ctrTailPart:
	// The last part of 64 bytes, through a byte mask: masked-off bytes
	// are neither read nor written (nor can they fault).
	TESTQ      CX, CX
	JZ         ctrDone
	MOVQ       $-1, R9
	BZHIQ      CX, R9, R9
	KMOVQ      R9, K1
	VMOVDQU8.Z (SI), K1, Z4
	VPXORD     Z4, Z0, Z0
	VMOVDQU8   Z0, K1, (DI)

ctrDone:
	VZEROUPPER

ctrRet:
	RET

// MULACC multiplies Z0-Z3 (sixteen blocks) by Z16-Z19 (sixteen powers of
// H) lane by lane and sums the unreduced products: low halves in Z4, high
// in Z5, middle in Z6.
#define MULACC \
	VPCLMULQDQ $0x00, Z16, Z0, Z4; \
	VPCLMULQDQ $0x11, Z16, Z0, Z5; \
	VPCLMULQDQ $0x01, Z16, Z0, Z6; \
	VPCLMULQDQ $0x10, Z16, Z0, Z7; \
	VPXORD     Z7, Z6, Z6; \
	VPCLMULQDQ $0x00, Z17, Z1, Z7; \
	VPCLMULQDQ $0x11, Z17, Z1, Z8; \
	VPCLMULQDQ $0x01, Z17, Z1, Z11; \
	VPCLMULQDQ $0x10, Z17, Z1, Z12; \
	VPXORD     Z7, Z4, Z4; \
	VPXORD     Z8, Z5, Z5; \
	VPTERNLOGD $0x96, Z12, Z11, Z6; \
	VPCLMULQDQ $0x00, Z18, Z2, Z7; \
	VPCLMULQDQ $0x11, Z18, Z2, Z8; \
	VPCLMULQDQ $0x01, Z18, Z2, Z11; \
	VPCLMULQDQ $0x10, Z18, Z2, Z12; \
	VPXORD     Z7, Z4, Z4; \
	VPXORD     Z8, Z5, Z5; \
	VPTERNLOGD $0x96, Z12, Z11, Z6; \
	VPCLMULQDQ $0x00, Z19, Z3, Z7; \
	VPCLMULQDQ $0x11, Z19, Z3, Z8; \
	VPCLMULQDQ $0x01, Z19, Z3, Z11; \
	VPCLMULQDQ $0x10, Z19, Z3, Z12; \
	VPXORD     Z7, Z4, Z4; \
	VPXORD     Z8, Z5, Z5; \
	VPTERNLOGD $0x96, Z12, Z11, Z6

// REDUCE folds Z4-Z6 (MULACC's sums) into one 256-bit product, sums its
// four lanes and reduces it into X9 (zeroing the rest of Z9), as
// gcm_amd64.s reduces, X10 holding gcmPoly.
#define REDUCE \
	VPSLLDQ       $8, Z6, Z7; \
	VPSRLDQ       $8, Z6, Z6; \
	VPXORD        Z7, Z4, Z4; \
	VPXORD        Z6, Z5, Z5; \
	VEXTRACTI64X4 $1, Z4, Y7; \
	VEXTRACTI64X4 $1, Z5, Y8; \
	VPXOR         Y7, Y4, Y4; \
	VPXOR         Y8, Y5, Y5; \
	VEXTRACTI128  $1, Y4, X7; \
	VEXTRACTI128  $1, Y5, X8; \
	VPXOR         X7, X4, X4; \
	VPXOR         X8, X5, X5; \
	VPCLMULQDQ    $0x01, X4, X10, X7; \
	VPSHUFD       $78, X4, X4; \
	VPXOR         X7, X4, X4; \
	VPCLMULQDQ    $0x01, X4, X10, X7; \
	VPSHUFD       $78, X4, X4; \
	VPXOR         X7, X4, X4; \
	VPXOR         X5, X4, X9

// TAILMASK sets k to the byte mask of the next 64 of R9 bytes left, and
// counts them off R9.
#define TAILMASK(k) \
	XORQ    R11, R11; \
	TESTQ   R9, R9; \
	CMOVQLT R11, R9; \
	MOVQ    $-1, R10; \
	BZHIQ   R9, R10, R10; \
	KMOVQ   R10, k; \
	SUBQ    $64, R9

// func ghashVAES(htab *[32][16]byte, acc *[16]byte, data []byte)
//
// Folds data into the GHASH accumulator *acc (gcm_amd64.s's form), the
// last block padded with zeros.
TEXT ·ghashVAES(SB), NOSPLIT, $0-40
	MOVQ  htab+0(FP), AX
	MOVQ  acc+8(FP), BX
	MOVQ  data_base+16(FP), SI
	MOVQ  data_len+24(FP), CX
	TESTQ CX, CX
	JZ    ghashRet

	VMOVDQU   (BX), X9
	VMOVDQU64 bswapMask<>(SB), Z31
	VMOVDQU   gcmPoly<>(SB), X10
	CMPQ      CX, $256
	JB        ghashTail
	VMOVDQU64 (64*0)(AX), Z16
	VMOVDQU64 (64*1)(AX), Z17
	VMOVDQU64 (64*2)(AX), Z18
	VMOVDQU64 (64*3)(AX), Z19

ghashLoop:
	VMOVDQU64 (64*0)(SI), Z0
	VMOVDQU64 (64*1)(SI), Z1
	VMOVDQU64 (64*2)(SI), Z2
	VMOVDQU64 (64*3)(SI), Z3
	VPSHUFB   Z31, Z0, Z0
	VPSHUFB   Z31, Z1, Z1
	VPSHUFB   Z31, Z2, Z2
	VPSHUFB   Z31, Z3, Z3
	VPXORD    Z9, Z0, Z0
	MULACC
	REDUCE
	ADDQ      $256, SI
	SUBQ      $256, CX
	CMPQ      CX, $256
	JAE       ghashLoop

ghashTail:
	// Under 256 bytes left, r <= 16 blocks, the last maybe in part:
	// masked loads fill the
	// rest of the sixteen with zeros, and the powers start at H^r
	// (htab[16-r]; what follows H^1 multiplies those zeros).
	TESTQ      CX, CX
	JZ         ghashDone
	LEAQ       15(CX), DX
	ANDQ       $-16, DX
	MOVQ       $256, R8
	SUBQ       DX, R8
	ADDQ       AX, R8
	VMOVDQU64  (64*0)(R8), Z16
	VMOVDQU64  (64*1)(R8), Z17
	VMOVDQU64  (64*2)(R8), Z18
	VMOVDQU64  (64*3)(R8), Z19
	MOVQ       CX, R9
	TAILMASK(K1)
	TAILMASK(K2)
	TAILMASK(K3)
	TAILMASK(K4)
	VMOVDQU8.Z (64*0)(SI), K1, Z0
	VMOVDQU8.Z (64*1)(SI), K2, Z1
	VMOVDQU8.Z (64*2)(SI), K3, Z2
	VMOVDQU8.Z (64*3)(SI), K4, Z3
	VPSHUFB    Z31, Z0, Z0
	VPSHUFB    Z31, Z1, Z1
	VPSHUFB    Z31, Z2, Z2
	VPSHUFB    Z31, Z3, Z3
	VPXORD     Z9, Z0, Z0
	MULACC
	REDUCE

ghashDone:
	VMOVDQU X9, (BX)
	VZEROUPPER

ghashRet:
	RET
