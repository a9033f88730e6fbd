/* mathlib.c — see mathlib.h. Polynomials are the classic Cephes single-precision
 * minimax fits (public-domain coefficients, Moshier 1984-1992), evaluated with
 * Horner's rule; range reduction by powers of two through the float's bits. */
#include "mathlib.h"
#include <stdio.h>
#include <math.h>
#include <string.h>

#define B (M->b)
static LLVMTypeRef jm_f32(jm_math *M) { return LLVMFloatTypeInContext(M->ctx); }
static LLVMTypeRef jm_i32(jm_math *M) { return LLVMInt32TypeInContext(M->ctx); }
static LLVMValueRef K(jm_math *M, double v) { return LLVMConstReal(jm_f32(M), v); }
static LLVMValueRef KI(jm_math *M, long long v) { return LLVMConstInt(jm_i32(M), (unsigned long long)v, 1); }
static LLVMValueRef FADD(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(B, a, b, ""); }
static LLVMValueRef FSUB(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(B, a, b, ""); }
static LLVMValueRef FMUL(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(B, a, b, ""); }
static LLVMValueRef FDIV(jm_math *M, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(B, a, b, ""); }
static LLVMValueRef SEL(jm_math *M, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSelect(B, c, a, b, ""); }
static LLVMValueRef FCMP(jm_math *M, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFCmp(B, p, a, b, ""); }

LLVMValueRef jm_math_intrinsic1(jm_math *M, const char *name, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(M->mod, id, &t, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(M->ctx, id, &t, 1);
    return LLVMBuildCall2(B, ft, fn, &x, 1, "");
}

LLVMValueRef jm_math_libm(jm_math *M, const char *name, LLVMValueRef x, LLVMValueRef y) {
    LLVMTypeRef d = LLVMTypeOf(x);
    LLVMTypeRef args[2] = { d, d };
    LLVMTypeRef ft = LLVMFunctionType(d, args, y ? 2 : 1, 0);
    char full[64];
    snprintf(full, sizeof full, "%s%s", M->libm_prefix ? M->libm_prefix : "", name);
    LLVMValueRef fn = LLVMGetNamedFunction(M->mod, full);
    if (!fn) fn = LLVMAddFunction(M->mod, full, ft);
    LLVMValueRef a[2] = { x, y };
    return LLVMBuildCall2(B, ft, fn, a, y ? 2 : 1, "");
}

/* p(x) = c[0] x^(n-1) + ... + c[n-1] */
static LLVMValueRef jm_horner(jm_math *M, LLVMValueRef x, const double *c, int n) {
    LLVMValueRef p = K(M, c[0]);
    for (int i = 1; i < n; i++) p = FADD(M, FMUL(M, p, x), K(M, c[i]));
    return p;
}

/* 2^n for integer-valued float n in [-126, 127], through the exponent bits */
static LLVMValueRef jm_pow2i(jm_math *M, LLVMValueRef n) {
    LLVMValueRef i = LLVMBuildFPToSI(B, n, jm_i32(M), "");
    LLVMValueRef bits = LLVMBuildShl(B, LLVMBuildAdd(B, i, KI(M, 127), ""), KI(M, 23), "");
    return LLVMBuildBitCast(B, bits, jm_f32(M), "");
}

LLVMValueRef jm_math_exp(jm_math *M, LLVMValueRef x) {
    if (LLVMTypeOf(x) != jm_f32(M)) return jm_math_libm(M, "exp", x, NULL);
    static const double P[] = { 1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1 };
    const double hi = 88.72283905206835, lo = -87.33654475055310;
    /* clamp into the range where 2^n is a normal float; the selects below fix the ends */
    LLVMValueRef xc = SEL(M, FCMP(M, LLVMRealOGT, x, K(M, hi)), K(M, hi), x);
    xc = SEL(M, FCMP(M, LLVMRealOLT, xc, K(M, lo)), K(M, lo), xc);
    LLVMValueRef n = jm_math_intrinsic1(M, "llvm.rint", FMUL(M, xc, K(M, 1.44269504088896341)));
    /* r = x - n ln2, with ln2 split in two for exactness */
    LLVMValueRef r = FSUB(M, xc, FMUL(M, n, K(M, 0.693359375)));
    r = FSUB(M, r, FMUL(M, n, K(M, -2.12194440e-4)));
    LLVMValueRef z = FMUL(M, r, r);
    LLVMValueRef p = FADD(M, FADD(M, FMUL(M, jm_horner(M, r, P, 6), z), r), K(M, 1.0));
    /* n can reach 128 at the top of the range: scale in two steps */
    LLVMValueRef n1 = FMUL(M, n, K(M, 0.5));
    n1 = jm_math_intrinsic1(M, "llvm.floor", n1);
    LLVMValueRef n2 = FSUB(M, n, n1);
    LLVMValueRef y = FMUL(M, FMUL(M, p, jm_pow2i(M, n1)), jm_pow2i(M, n2));
    y = SEL(M, FCMP(M, LLVMRealOGT, x, K(M, hi)), K(M, INFINITY), y);
    y = SEL(M, FCMP(M, LLVMRealOLT, x, K(M, lo)), K(M, 0.0), y);
    return SEL(M, FCMP(M, LLVMRealUNO, x, x), x, y);
}

LLVMValueRef jm_math_log(jm_math *M, LLVMValueRef x) {
    if (LLVMTypeOf(x) != jm_f32(M)) return jm_math_libm(M, "log", x, NULL);
    static const double P[] = { 7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
                                -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1 };
    /* subnormal inputs are scaled by 2^25 first */
    LLVMValueRef tiny = FCMP(M, LLVMRealOLT, x, K(M, 1.17549435e-38));
    LLVMValueRef xs = SEL(M, tiny, FMUL(M, x, K(M, 33554432.0)), x);
    LLVMValueRef bits = LLVMBuildBitCast(B, xs, jm_i32(M), "");
    LLVMValueRef e = LLVMBuildSub(B, LLVMBuildAnd(B, LLVMBuildLShr(B, bits, KI(M, 23), ""), KI(M, 255), ""), KI(M, 126), "");
    e = SEL(M, tiny, LLVMBuildSub(B, e, KI(M, 25), ""), e);
    /* mantissa in [0.5, 1) */
    LLVMValueRef m = LLVMBuildBitCast(B, LLVMBuildOr(B, LLVMBuildAnd(B, bits, KI(M, 0x007fffff), ""), KI(M, 0x3f000000), ""), jm_f32(M), "");
    LLVMValueRef small = FCMP(M, LLVMRealOLT, m, K(M, 0.707106781186547524));
    LLVMValueRef ef = LLVMBuildSIToFP(B, SEL(M, small, LLVMBuildSub(B, e, KI(M, 1), ""), e), jm_f32(M), "");
    LLVMValueRef f = SEL(M, small, FSUB(M, FADD(M, m, m), K(M, 1.0)), FSUB(M, m, K(M, 1.0)));
    LLVMValueRef z = FMUL(M, f, f);
    LLVMValueRef y = FMUL(M, FMUL(M, f, z), jm_horner(M, f, P, 9));
    y = FADD(M, y, FMUL(M, ef, K(M, -2.12194440e-4)));
    y = FSUB(M, y, FMUL(M, z, K(M, 0.5)));
    LLVMValueRef r = FADD(M, FADD(M, f, y), FMUL(M, ef, K(M, 0.693359375)));
    r = SEL(M, FCMP(M, LLVMRealOEQ, x, K(M, INFINITY)), x, r);
    r = SEL(M, FCMP(M, LLVMRealOEQ, x, K(M, 0.0)), K(M, -INFINITY), r);
    r = SEL(M, FCMP(M, LLVMRealOLT, x, K(M, 0.0)), K(M, NAN), r);
    return SEL(M, FCMP(M, LLVMRealUNO, x, x), x, r);
}

LLVMValueRef jm_math_tanh(jm_math *M, LLVMValueRef x) {
    if (LLVMTypeOf(x) != jm_f32(M)) return jm_math_libm(M, "tanh", x, NULL);
    static const double P[] = { -5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1, -3.33332819422E-1 };
    LLVMValueRef ax = jm_math_intrinsic1(M, "llvm.fabs", x);
    /* small |x|: odd polynomial; otherwise 1 - 2 / (e^(2|x|) + 1) with x's sign */
    LLVMValueRef z = FMUL(M, x, x);
    LLVMValueRef ps = FADD(M, FMUL(M, FMUL(M, jm_horner(M, z, P, 5), z), x), x);
    LLVMValueRef t = jm_math_exp(M, FMUL(M, ax, K(M, 2.0)));
    LLVMValueRef mag = FSUB(M, K(M, 1.0), FDIV(M, K(M, 2.0), FADD(M, t, K(M, 1.0))));
    LLVMValueRef neg = FCMP(M, LLVMRealOLT, x, K(M, 0.0));
    LLVMValueRef signed_big = SEL(M, neg, LLVMBuildFNeg(B, mag, ""), mag);
    LLVMValueRef r = SEL(M, FCMP(M, LLVMRealOLT, ax, K(M, 0.625)), ps, signed_big);
    return SEL(M, FCMP(M, LLVMRealUNO, x, x), x, r);
}

LLVMValueRef jm_math_sigmoid(jm_math *M, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    LLVMValueRef one = LLVMConstReal(t, 1.0);
    LLVMValueRef e = jm_math_exp(M, LLVMBuildFNeg(B, jm_math_intrinsic1(M, "llvm.fabs", x), ""));
    LLVMValueRef d = LLVMBuildFAdd(B, one, e, "");
    /* x >= 0: 1 / (1 + e^-x); x < 0: e^x / (1 + e^x) (no overflow either way) */
    LLVMValueRef r = SEL(M, LLVMBuildFCmp(B, LLVMRealOGE, x, LLVMConstReal(t, 0.0), ""), LLVMBuildFDiv(B, one, d, ""), LLVMBuildFDiv(B, e, d, ""));
    return SEL(M, LLVMBuildFCmp(B, LLVMRealUNO, x, x, ""), x, r);
}

LLVMValueRef jm_math_log1p(jm_math *M, LLVMValueRef x) {
    if (LLVMTypeOf(x) != jm_f32(M)) return jm_math_libm(M, "log1p", x, NULL);
    /* log(u) * x / (u - 1) with u = 1 + x corrects the rounding of u (Goldberg);
       when u rounds to 1, log1p(x) = x */
    LLVMValueRef u = FADD(M, x, K(M, 1.0));
    LLVMValueRef d = FSUB(M, u, K(M, 1.0));
    LLVMValueRef r = FMUL(M, jm_math_log(M, u), FDIV(M, x, d));
    r = SEL(M, FCMP(M, LLVMRealOEQ, d, K(M, 0.0)), x, r);
    return SEL(M, FCMP(M, LLVMRealOGT, x, K(M, 1e30)), jm_math_log(M, x), r);
}

LLVMValueRef jm_math_softplus(jm_math *M, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    /* x > 0: x + log1p(e^-x); else log1p(e^x) */
    LLVMValueRef ax = jm_math_intrinsic1(M, "llvm.fabs", x);
    LLVMValueRef l = jm_math_log1p(M, jm_math_exp(M, LLVMBuildFNeg(B, ax, "")));
    LLVMValueRef r = SEL(M, LLVMBuildFCmp(B, LLVMRealOGT, x, LLVMConstReal(t, 0.0), ""), LLVMBuildFAdd(B, x, l, ""), l);
    return SEL(M, LLVMBuildFCmp(B, LLVMRealUNO, x, x, ""), x, r);
}
