/* rng_ir.c — see rng_ir.h. Each function mirrors its C twin in
 * runtime/engine/philox_core.h (or rt_cpu.c's jm_lib_rng) operation for
 * operation; tests/t_fused_noise.c checks the bits over millions of draws. */
#include "rng_ir.h"
#include <stdint.h>

#define B (M->b)
static LLVMTypeRef T32(jm_math *M) { return LLVMInt32TypeInContext(M->ctx); }
static LLVMTypeRef T64(jm_math *M) { return LLVMInt64TypeInContext(M->ctx); }
static LLVMTypeRef F32(jm_math *M) { return LLVMFloatTypeInContext(M->ctx); }
static LLVMTypeRef F64(jm_math *M) { return LLVMDoubleTypeInContext(M->ctx); }
static LLVMValueRef U32(jm_math *M, uint32_t v) { return LLVMConstInt(T32(M), v, 0); }
static LLVMValueRef C64(jm_math *M, int64_t v) { return LLVMConstInt(T64(M), (unsigned long long)v, 1); }
static LLVMValueRef KF(jm_math *M, double v) { return LLVMConstReal(F32(M), v); }

/* word k of the runtime's jm_rng_ctx */
static LLVMValueRef jm_ctx_word(jm_math *M, LLVMValueRef ctx, int k) {
    LLVMValueRef ix = C64(M, k);
    LLVMValueRef v = LLVMBuildLoad2(B, T32(M), LLVMBuildInBoundsGEP2(B, T32(M), ctx, &ix, 1, ""), "");
    LLVMSetAlignment(v, 4);
    return v;
}

/* hi and lo words of the 64-bit product a * m */
static void jm_mulhilo(jm_math *M, LLVMValueRef a, uint32_t m, LLVMValueRef *hi, LLVMValueRef *lo) {
    LLVMValueRef p = LLVMBuildMul(B, LLVMBuildZExt(B, a, T64(M), ""), LLVMConstInt(T64(M), m, 0), "");
    *lo = LLVMBuildTrunc(B, p, T32(M), "");
    *hi = LLVMBuildTrunc(B, LLVMBuildLShr(B, p, LLVMConstInt(T64(M), 32, 0), ""), T32(M), "");
}

/* Philox4x32-10 (philox_core.h's jm_philox4x32): words 0 and 1 of the block */
static void jm_philox_ir(jm_math *M, LLVMValueRef c[4], LLVMValueRef k0, LLVMValueRef k1, LLVMValueRef *w0, LLVMValueRef *w1) {
    for (int r = 0; r < 10; r++) {
        LLVMValueRef h0, l0, h1, l1;
        jm_mulhilo(M, c[0], 0xD2511F53u, &h0, &l0);
        jm_mulhilo(M, c[2], 0xCD9E8D57u, &h1, &l1);
        LLVMValueRef n0 = LLVMBuildXor(B, LLVMBuildXor(B, h1, c[1], ""), k0, "");
        LLVMValueRef n2 = LLVMBuildXor(B, LLVMBuildXor(B, h0, c[3], ""), k1, "");
        c[0] = n0; c[1] = l1; c[2] = n2; c[3] = l0;
        k0 = LLVMBuildAdd(B, k0, U32(M, 0x9E3779B9u), "");
        k1 = LLVMBuildAdd(B, k1, U32(M, 0xBB67AE85u), "");
    }
    *w0 = c[0];
    *w1 = c[1];
}

static LLVMValueRef jm_fmul(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(B, a, b, ""); }
static LLVMValueRef jm_fadd(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(B, a, b, ""); }
static LLVMValueRef jm_fsub(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(B, a, b, ""); }

/* (c0 x + c1) x + c2: philox_core.h's jm_philox_horner3f */
static LLVMValueRef jm_horner3(jm_math *M, LLVMValueRef x, double c0, double c1, double c2) {
    return jm_fadd(M, jm_fmul(M, jm_fadd(M, jm_fmul(M, KF(M, c0), x), KF(M, c1)), x), KF(M, c2));
}

/* cos(2 pi u): philox_core.h's jm_philox_cos2pif */
static LLVMValueRef jm_cos2pi_ir(jm_math *M, LLVMValueRef u) {
    LLVMValueRef q = jm_fmul(M, u, KF(M, 4.0));
    LLVMValueRef n = jm_math_intrinsic1(M, "llvm.rint", q);
    LLVMValueRef t = jm_fmul(M, jm_fsub(M, q, n), KF(M, 1.5707963267948966));
    LLVMValueRef z = jm_fmul(M, t, t);
    LLVMValueRef s = jm_fadd(M, jm_fmul(M, jm_fmul(M, jm_horner3(M, z, -1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1), z), t), t);
    LLVMValueRef c = jm_fadd(M, jm_fsub(M, jm_fmul(M, jm_fmul(M, jm_horner3(M, z, 2.443315711809948E-5, -1.388731625493765E-3,
                                                                         4.166664568298827E-2), z), z),
                                          jm_fmul(M, z, KF(M, 0.5))), KF(M, 1.0));
    LLVMValueRef k = LLVMBuildAnd(B, LLVMBuildFPToSI(B, n, T32(M), ""), U32(M, 3), "");
    LLVMValueRef odd = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildAnd(B, k, U32(M, 1), ""), U32(M, 0), "");
    LLVMValueRef v = LLVMBuildSelect(B, odd, s, c, "");
    LLVMValueRef neg = LLVMBuildOr(B, LLVMBuildICmp(B, LLVMIntEQ, k, U32(M, 1), ""), LLVMBuildICmp(B, LLVMIntEQ, k, U32(M, 2), ""), "");
    return LLVMBuildSelect(B, neg, LLVMBuildFNeg(B, v, ""), v, "");
}

/* philox_core.h's jm_philox_normal_f32_of; log is mathlib's, which
   jm_philox_logf mirrors on (0, 1] */
static LLVMValueRef jm_normal_ir(jm_math *M, LLVMValueRef w0, LLVMValueRef w1) {
    LLVMValueRef h = LLVMBuildLShr(B, w0, U32(M, 1), "");
    LLVMValueRef u1 = jm_fadd(M, jm_fmul(M, LLVMBuildSIToFP(B, h, F32(M), ""), KF(M, 0x1p-31)), KF(M, 0x1p-32));
    LLVMValueRef u2 = jm_fmul(M, LLVMBuildSIToFP(B, LLVMBuildLShr(B, w1, U32(M, 8), ""), F32(M), ""), KF(M, 0x1p-24));
    LLVMValueRef r = jm_math_intrinsic1(M, "llvm.sqrt", jm_fmul(M, KF(M, -2.0), jm_math_log(M, u1)));
    return jm_fmul(M, r, jm_cos2pi_ir(M, u2));
}

LLVMValueRef jm_rng_ir_draw(jm_math *M, const jm_node *n, LLVMValueRef lin, LLVMValueRef ctx) {
    /* the element number: per-example draws (compiler/dp.h) are numbered by
       the global example over the shards (rt_cpu.c's jm_lib_rng; identity
       when nshards = 1) */
    LLVMValueRef e = lin;
    int axis = n->attr.ni > 1 && n->attr.i[1] > 0 ? (int)n->attr.i[1] : 0;
    if (axis) {
        int64_t Bt = n->type.dim[axis - 1], in = 1;
        for (int d = axis; d < n->type.rank; d++) in *= n->type.dim[d];
        if (Bt > 0 && in > 0) {
            LLVMValueRef S = LLVMBuildZExt(B, jm_ctx_word(M, ctx, 5), T64(M), "");
            LLVMValueRef sh = LLVMBuildZExt(B, jm_ctx_word(M, ctx, 4), T64(M), "");
            LLVMValueRef o = LLVMBuildUDiv(B, lin, C64(M, Bt * in), "");
            LLVMValueRef k = LLVMBuildURem(B, LLVMBuildUDiv(B, lin, C64(M, in), ""), C64(M, Bt), "");
            LLVMValueRef r = LLVMBuildURem(B, lin, C64(M, in), "");
            LLVMValueRef row = LLVMBuildAdd(B, LLVMBuildAdd(B, LLVMBuildMul(B, o, LLVMBuildMul(B, S, C64(M, Bt), ""), ""),
                                                            LLVMBuildMul(B, sh, C64(M, Bt), ""), ""), k, "");
            e = LLVMBuildAdd(B, LLVMBuildMul(B, row, C64(M, in), ""), r, "");
        }
    }
    /* counter (element, iteration, stream, call), key (seed low, seed high): philox.h */
    LLVMValueRef c[4] = { LLVMBuildTrunc(B, e, T32(M), ""), jm_ctx_word(M, ctx, 3), U32(M, (uint32_t)n->attr.i[0]),
                          jm_ctx_word(M, ctx, 2) };
    LLVMValueRef w0, w1;
    jm_philox_ir(M, c, jm_ctx_word(M, ctx, 0), jm_ctx_word(M, ctx, 1), &w0, &w1);
    double a = n->attr.f[0], b = n->attr.f[1];
    LLVMValueRef v;
    if (n->op == JM_OP_RNG_NORMAL) {
        /* a + b * z in double, rounded once to float (jm_lib_rng) */
        LLVMValueRef z = LLVMBuildFPExt(B, jm_normal_ir(M, w0, w1), F64(M), "");
        v = LLVMBuildFAdd(B, LLVMConstReal(F64(M), a), LLVMBuildFMul(B, LLVMConstReal(F64(M), b), z, ""), "");
    } else {
        /* u = (w0 + 0.5) 2^-32 (philox_core.h's jm_philox_unit); a + (b - a) u */
        LLVMValueRef u = LLVMBuildFMul(B, LLVMBuildFAdd(B, LLVMBuildUIToFP(B, w0, F64(M), ""), LLVMConstReal(F64(M), 0.5), ""),
                                       LLVMConstReal(F64(M), 1.0 / 4294967296.0), "");
        v = LLVMBuildFAdd(B, LLVMConstReal(F64(M), a), LLVMBuildFMul(B, LLVMConstReal(F64(M), b - a), u, ""), "");
    }
    return LLVMBuildFPTrunc(B, v, F32(M), "");
}
