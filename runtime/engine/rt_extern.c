/* rt_extern.c — see rt_extern.h. One jm_xfn per declared function: the
 * library handle, the symbol and the libffi call interface built from the
 * declared signature. A call converts arguments whose element type differs
 * from the declared one into temporary buffers, passes rank-0 arguments by
 * value, and converts the result back. */
#include "rt_extern.h"
#include <dlfcn.h>
#include <ffi.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jm_xfn {
    char *name, *library;
    void *handle, *sym;
    ffi_cif cif;
    ffi_type **atypes;           /* the cif keeps pointing at it */
    int np;
    int *pdt, *prank;            /* declared element type and rank of each parameter */
    int64_t *pnumel;
    int rdt, rrank;
    int64_t rnumel;
};

typedef union { float f; double d; int32_t i32; int64_t i64; uint8_t b; } jm_xval;

static void jm_xerr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static ffi_type *jm_xffi(int dt) {
    switch (dt) {
    case JM_DT_F32: return &ffi_type_float;
    case JM_DT_F64: return &ffi_type_double;
    case JM_DT_I32: return &ffi_type_sint32;
    case JM_DT_I64: return &ffi_type_sint64;
    default: return &ffi_type_uint8;
    }
}

static int64_t jm_xnumel(const jm_tdesc *d, int *ok) {
    int64_t n = 1;
    if (d->dtype < JM_DT_F32 || d->dtype > JM_DT_BOOL || d->rank < 0 || d->rank > JM_TABLE_MAX_RANK) { *ok = 0; return 0; }
    for (int i = 0; i < d->rank; i++) {
        if (d->dim[i] < 0 || (d->dim[i] && n > (INT64_C(1) << 40) / d->dim[i])) { *ok = 0; return 0; }
        n *= d->dim[i];
    }
    return n;
}

/* element i of p (element type dt) as a double, or as an integer for integer types */
static int jm_xis_int(int dt) { return dt == JM_DT_I32 || dt == JM_DT_I64 || dt == JM_DT_BOOL; }
static double jm_xget_f(const void *p, int dt, int64_t i) {
    switch (dt) {
    case JM_DT_F32: return ((const float *)p)[i];
    case JM_DT_F64: return ((const double *)p)[i];
    case JM_DT_I32: return ((const int32_t *)p)[i];
    case JM_DT_I64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i] != 0;
    }
}
static int64_t jm_xget_i(const void *p, int dt, int64_t i) {
    switch (dt) {
    case JM_DT_I32: return ((const int32_t *)p)[i];
    case JM_DT_I64: return ((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i] != 0;
    }
}

/* n elements from src (type sdt) to dst (type ddt). Floats become integers by
   truncation toward zero (non-finite or out-of-range values give 0), integers
   wrap to i32, anything non-zero is a true bool. */
static void jm_xconvert(void *dst, int ddt, const void *src, int sdt, int64_t n) {
    if (ddt == sdt) { memcpy(dst, src, (size_t)n * jm_rt_dtype_size(ddt)); return; }
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        double f;
        if (jm_xis_int(sdt)) {
            v = jm_xget_i(src, sdt, i);
            f = (double)v;
        } else {
            f = jm_xget_f(src, sdt, i);
            v = isfinite(f) && fabs(f) < 9.2e18 ? (int64_t)f : 0;
        }
        switch (ddt) {
        case JM_DT_F32: ((float *)dst)[i] = (float)f; break;
        case JM_DT_F64: ((double *)dst)[i] = f; break;
        case JM_DT_I32: ((int32_t *)dst)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
        case JM_DT_I64: ((int64_t *)dst)[i] = v; break;
        default: ((uint8_t *)dst)[i] = jm_xis_int(sdt) ? v != 0 : f != 0; break;
        }
    }
}

void jm_xfn_close(jm_xfn *f) {
    if (!f) return;
    if (f->handle) dlclose(f->handle);
    free(f->name); free(f->library); free(f->atypes); free(f->pdt); free(f->prank); free(f->pnumel);
    free(f);
}

jm_xfn *jm_xfn_open(const jm_textern *x, char *err, size_t errlen) {
    const char *name = x->name ? x->name : "", *lib = x->library ? x->library : "";
    if (x->nparams < 0 || x->nparams > 4096) { jm_xerr(err, errlen, "extern %s: %d parameters", name, (int)x->nparams); return NULL; }
    jm_xfn *f = calloc(1, sizeof *f);
    int np = x->nparams;
    if (f) {
        f->np = np;
        f->name = strdup(name);
        f->library = strdup(lib);
        f->atypes = calloc((size_t)np + 2, sizeof(ffi_type *));
        f->pdt = calloc((size_t)np + 1, sizeof(int));
        f->prank = calloc((size_t)np + 1, sizeof(int));
        f->pnumel = calloc((size_t)np + 1, sizeof(int64_t));
    }
    if (!f || !f->name || !f->library || !f->atypes || !f->pdt || !f->prank || !f->pnumel) {
        jm_xerr(err, errlen, "extern %s: out of memory", name);
        jm_xfn_close(f);
        return NULL;
    }
    int ok = 1;
    for (int i = 0; i < np; i++) {
        f->pdt[i] = x->params[i].dtype;
        f->prank[i] = x->params[i].rank;
        f->pnumel[i] = jm_xnumel(&x->params[i], &ok);
    }
    f->rdt = x->ret.dtype;
    f->rrank = x->ret.rank;
    f->rnumel = jm_xnumel(&x->ret, &ok);
    if (!ok) { jm_xerr(err, errlen, "extern %s: bad signature (a type out of range)", name); jm_xfn_close(f); return NULL; }
    if (!lib[0]) { jm_xerr(err, errlen, "extern %s: no library given", name); jm_xfn_close(f); return NULL; }
    dlerror();
    f->handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!f->handle) {
        const char *why = dlerror();
        jm_xerr(err, errlen, "extern %s: cannot load %s: %s", name, lib, why ? why : "unknown error");
        jm_xfn_close(f);
        return NULL;
    }
    dlerror();
    f->sym = dlsym(f->handle, name);
    if (!f->sym) {
        jm_xerr(err, errlen, "extern %s: %s has no symbol %s", name, lib, name);
        jm_xfn_close(f);
        return NULL;
    }
    for (int i = 0; i < np; i++) f->atypes[i] = f->prank[i] > 0 ? &ffi_type_pointer : jm_xffi(f->pdt[i]);
    ffi_type *rtype = f->rrank > 0 ? &ffi_type_void : jm_xffi(f->rdt);
    unsigned nargs = (unsigned)np;
    if (f->rrank > 0) f->atypes[nargs++] = &ffi_type_pointer;
    if (ffi_prep_cif(&f->cif, FFI_DEFAULT_ABI, nargs, rtype, f->atypes) != FFI_OK) {
        jm_xerr(err, errlen, "extern %s: libffi cannot prepare a call with this signature", name);
        jm_xfn_close(f);
        return NULL;
    }
    return f;
}

int jm_xfn_call(jm_xfn *f, const void *const *args, const int64_t *argdt, void *out, int outdt, char *err, size_t errlen) {
    int np = f->np, rc = -1;
    void **ptrs = calloc((size_t)np + 2, sizeof(void *));     /* pointer arguments */
    void **avalues = calloc((size_t)np + 2, sizeof(void *));  /* what libffi reads each argument from */
    void **tmp = calloc((size_t)np + 2, sizeof(void *));      /* converted copies, freed below */
    jm_xval *vals = calloc((size_t)np + 1, sizeof(jm_xval));  /* rank-0 arguments, by value */
    if (!ptrs || !avalues || !tmp || !vals) goto oom;
    for (int i = 0; i < np; i++) {
        int dt = (int)argdt[i];
        const void *src = args[i];
        if (dt < JM_DT_F32 || dt > JM_DT_BOOL) {
            jm_xerr(err, errlen, "extern %s: argument %d has element type %d", f->name, i + 1, dt);
            goto done;
        }
        if (dt != f->pdt[i]) {
            int64_t n = f->pnumel[i];
            tmp[i] = malloc((size_t)(n > 0 ? n : 1) * jm_rt_dtype_size(f->pdt[i]));
            if (!tmp[i]) goto oom;
            jm_xconvert(tmp[i], f->pdt[i], src, dt, n);
            src = tmp[i];
        }
        if (f->prank[i] > 0) {
            ptrs[i] = (void *)src;
            avalues[i] = &ptrs[i];
        } else {
            memcpy(&vals[i], src, jm_rt_dtype_size(f->pdt[i]));
            if (f->pdt[i] == JM_DT_BOOL) vals[i].b = vals[i].b != 0;
            avalues[i] = &vals[i];
        }
    }
    if (f->rrank > 0) {
        size_t bytes = (size_t)f->rnumel * jm_rt_dtype_size(f->rdt);
        void *dst = out;
        if (outdt != f->rdt) {
            dst = tmp[np] = calloc(bytes ? bytes : 1, 1);
            if (!dst) goto oom;
        } else if (bytes) {
            memset(out, 0, bytes);
        }
        ptrs[np] = dst;
        avalues[np] = &ptrs[np];
        ffi_call(&f->cif, FFI_FN(f->sym), NULL, avalues);
        if (dst != out) jm_xconvert(out, outdt, dst, f->rdt, f->rnumel);
    } else {
        union { ffi_arg a; ffi_sarg s; float f; double d; unsigned char pad[16]; } rv;
        memset(&rv, 0, sizeof rv);
        ffi_call(&f->cif, FFI_FN(f->sym), &rv, avalues);
        jm_xval r;
        memset(&r, 0, sizeof r);
        switch (f->rdt) {
        case JM_DT_F32: r.f = rv.f; break;
        case JM_DT_F64: r.d = rv.d; break;
        case JM_DT_I32: r.i32 = (int32_t)rv.s; break;
        case JM_DT_I64: r.i64 = (int64_t)rv.s; break;
        default: r.b = (uint8_t)rv.a != 0; break;
        }
        jm_xconvert(out, outdt, &r, f->rdt, 1);
    }
    rc = 0;
    goto done;
oom:
    jm_xerr(err, errlen, "extern %s: out of memory", f->name);
done:
    if (tmp) for (int i = 0; i <= np; i++) free(tmp[i]);
    free(ptrs); free(avalues); free(tmp); free(vals);
    return rc;
}
