/* rt_knobs.c — see rt_knobs.h. */
#include "rt_knobs.h"
#include "names.h"
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int jm_knob_find(const jm_table *t, const char *name) {
    for (int g = 0; g < t->nglobals; g++) {
        const jm_tglobal *gl = &t->globals[g];
        if (gl->kind == JM_GKIND_CONFIG && strncmp(gl->t.name, "config.", 7) == 0 && strcmp(gl->t.name + 7, name) == 0) return g;
    }
    return -1;
}

double jm_knob_get(jm_rt *rt, int g) {
    const void *p = jm_rt_global_read(rt, g);
    switch (rt->t->globals[g].t.dtype) {
    case JM_DT_F32: return *(const float *)p;
    case JM_DT_F64: return *(const double *)p;
    case JM_DT_I64: return (double)*(const int64_t *)p;
    case JM_DT_I32: return *(const int32_t *)p;
    default: return *(const unsigned char *)p;
    }
}

void jm_knob_put(jm_rt *rt, int g, double v) {
    void *p = jm_rt_global(rt, g);
    switch (rt->t->globals[g].t.dtype) {
    case JM_DT_F32: *(float *)p = (float)v; break;
    case JM_DT_F64: *(double *)p = v; break;
    case JM_DT_I64: *(int64_t *)p = (int64_t)v; break;
    case JM_DT_I32: *(int32_t *)p = (int32_t)v; break;
    default: *(unsigned char *)p = v != 0; break;
    }
}

static void jm_knob_names(const jm_table *t, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int g = 0; g < t->nglobals && used < n; g++)
        if (t->globals[g].kind == JM_GKIND_CONFIG)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", t->globals[g].t.name + 7);
    if (!buf[0]) snprintf(buf, n, "none");
}

int jm_knob_assign(jm_rt *rt, const char *assign, char *err, size_t errlen) {
    const char *eq = strchr(assign, '=');
    char name[128], names[1024];
    jm_knob_names(rt->t, names, sizeof names);
    if (!eq || eq == assign || (size_t)(eq - assign) >= sizeof name) {
        snprintf(err, errlen, "--set needs NAME=VALUE, got '%s' (settings: %s)", assign, names);
        return -1;
    }
    snprintf(name, sizeof name, "%.*s", (int)(eq - assign), assign);
    int g = jm_knob_find(rt->t, name);
    if (g < 0) {
        const char *cands[256];
        int n = 0;
        for (int k = 0; k < rt->t->nglobals && n < 256; k++)
            if (rt->t->globals[k].kind == JM_GKIND_CONFIG) cands[n++] = rt->t->globals[k].t.name + 7;
        const char *best = jm_closest_name(name, cands, n);
        snprintf(err, errlen, "'%s' is not a run-time setting of this executable%s%s%s; the settings are: %s "
                              "(other config constants are compiled in: change them with `jemc compile -D %s=...`)",
                 name, best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "", names, name);
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(eq + 1, &end);
    int is_int = rt->t->globals[g].t.dtype == JM_DT_I64 || rt->t->globals[g].t.dtype == JM_DT_I32;
    if (!eq[1] || *end || errno || !isfinite(v) || (is_int && (v != floor(v) || v < 0 || v > 1e12))) {
        snprintf(err, errlen, "--set %s: '%s' is not %s", name, eq + 1, is_int ? "a non-negative integer" : "a finite number");
        return -1;
    }
    jm_knob_put(rt, g, v);
    return 0;
}

void jm_knob_list(jm_rt *rt, FILE *f, const char *sep) {
    int first = 1;
    for (int g = 0; g < rt->t->nglobals; g++)
        if (rt->t->globals[g].kind == JM_GKIND_CONFIG) {
            fprintf(f, "%s%s=%.7g", first ? "" : sep, rt->t->globals[g].t.name + 7, jm_knob_get(rt, g));
            first = 0;
        }
}
