/* rng_ir.h — random draws computed inline by a fused kernel (fused noise:
 * compiler/plan.c decides which). The IR evaluates Philox4x32-10 and the
 * draw's formula exactly as runtime/engine/philox_core.h and the CPU
 * runtime's step do, so a fused draw equals the unfused one bit for bit:
 *   uniform(a, b)  (float)(a + (b - a) * u),  u = (w0 + 0.5) 2^-32 in double
 *   normal(m, s)   (float)(m + s * z),        z = philox_core.h's float32 Box-Muller
 * Every operation is vectorizable (no calls), so the loop vectorizer draws a
 * vector of elements per iteration. */
#ifndef JM_RNG_IR_H
#define JM_RNG_IR_H
#include "mathlib.h"
#include "ir.h"

/* The float32 value of draw node n (RNG_NORMAL or RNG_UNIFORM, dtype f32) at
   flat element `lin` (i64) of its own shape; ctx points at the runtime's
   jm_rng_ctx (engine/rt_kernels.h). */
LLVMValueRef jm_rng_ir_draw(jm_math *M, const jm_node *n, LLVMValueRef lin, LLVMValueRef ctx);
#endif
