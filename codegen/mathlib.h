/* mathlib.h — transcendental functions as plain LLVM IR (polynomials, bit
 * manipulation, selects): no calls, so the loop vectorizer turns them into
 * vector code on any target (LLVM's C API cannot attach a vector math library,
 * and llvm.exp does not lower on NVPTX). float32 only; float64 calls libm.
 *
 * Accuracy (float32 against double-precision libm, bench/mathlib/accuracy.sh,
 * 200,000 points over exp's range and log inputs 1e-35..1e35): exp 0.95 ulp,
 * log 0.74, tanh 1.3, sigmoid 2.2, softplus 2.4, log1p 3.4 (the last including
 * the rounding of its float32 input). Special values follow C: exp(-inf)=0,
 * exp(+inf)=inf, log(0)=-inf, log(x<0)=NaN, NaN in -> NaN out. Results that
 * would be float32 subnormals are flushed to zero (exp below -87.3). */
#ifndef JM_MATHLIB_H
#define JM_MATHLIB_H
#include <llvm-c/Core.h>

typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const char *libm_prefix;    /* prepended to C library names: NULL or "" (CPU), "__nv_" (libdevice) */
} jm_math;

LLVMValueRef jm_math_exp(jm_math *M, LLVMValueRef x);
LLVMValueRef jm_math_log(jm_math *M, LLVMValueRef x);
LLVMValueRef jm_math_tanh(jm_math *M, LLVMValueRef x);
LLVMValueRef jm_math_sigmoid(jm_math *M, LLVMValueRef x);
LLVMValueRef jm_math_log1p(jm_math *M, LLVMValueRef x);
LLVMValueRef jm_math_softplus(jm_math *M, LLVMValueRef x);
/* a call of a one-argument intrinsic such as "llvm.sqrt" or "llvm.fabs" at x's type */
LLVMValueRef jm_math_intrinsic1(jm_math *M, const char *name, LLVMValueRef x);
/* a call of a C library function double f(double) (or of two arguments),
   named with M->libm_prefix ("__nv_pow" on the GPU) */
LLVMValueRef jm_math_libm(jm_math *M, const char *name, LLVMValueRef x, LLVMValueRef y);
#endif
