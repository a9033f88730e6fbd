/* rt_extern.h — calling a user's C function (a graph's `extern` declaration)
 * through libffi, for the interpreter (compiler/interp.c) and the executor
 * (rt_cpu.c) alike.
 *
 * The ABI, from the declared signature `extern "LIB" f(a: T[dims], s: T[]) -> R`:
 *   - a parameter of rank > 0 is passed as `const T *` (row-major, contiguous);
 *   - a parameter of rank 0 is passed by value;
 *   - a result of rank 0 is the function's return value; a result of rank > 0
 *     is written through one extra, last parameter `T *out` (zeroed before the
 *     call) and the function returns void;
 *   - T: f32 float, f64 double, i32 int32_t, i64 int64_t, bool bool (one byte,
 *     0 or 1; a returned bool is read as "non-zero").
 * The function is called by one thread, once per evaluation; it must not write
 * its inputs nor keep any pointer after it returns.
 *
 * The library is dlopen'ed (RTLD_NOW | RTLD_LOCAL) by jm_xfn_open: an absolute
 * path as the compiler resolved it, or a bare name for dlopen's own search
 * (LD_LIBRARY_PATH, the system directories). */
#ifndef JM_RT_EXTERN_H
#define JM_RT_EXTERN_H
#include <stddef.h>
#include <stdint.h>
#include "rt_table.h"

typedef struct jm_xfn jm_xfn;

/* Loads x->library, finds the symbol x->name and prepares the libffi call
   interface (the signature is copied: x need not outlive the result). NULL with
   err set ("extern NAME: cannot load LIBRARY: <dlerror>", "extern NAME: LIBRARY
   has no symbol NAME", ...). */
jm_xfn *jm_xfn_open(const jm_textern *x, char *err, size_t errlen);
void jm_xfn_close(jm_xfn *f);
/* One call. args[i] holds parameter i's elements with element type argdt[i]
   (a jm_rt_dtype), out receives the result's with type outdt; values are
   converted to and from the declared types where those differ (an f64
   evaluation of an f32 graph passes floats). 0 ok; -1 with err set. */
int jm_xfn_call(jm_xfn *f, const void *const *args, const int64_t *argdt, void *out, int outdt, char *err, size_t errlen);
#endif
