/* ir.c — types, the op table, node construction, the verifier and the dump. */
#include "ir.h"
#include <inttypes.h>
#include <string.h>

const jm_op_info jm_ops[JM_OP_COUNT] = {
#define JM_OP(e, name, cls, arity, shape, interp, grad) { name, JM_CLASS_##cls, arity },
#include "ops.def"
#undef JM_OP
};

static const char *const jm_dtype_names[] = { "f32", "f64", "i32", "i64", "bool", "tuple" };

const char *jm_dtype_name(jm_dtype t) { return (unsigned)t <= JM_TUPLE ? jm_dtype_names[t] : "?"; }

int jm_dtype_parse(const char *s, jm_dtype *out) {
    for (int i = 0; i < JM_TUPLE; i++)
        if (strcmp(s, jm_dtype_names[i]) == 0) { *out = (jm_dtype)i; return 0; }
    return -1;
}

int jm_dtype_is_float(jm_dtype t) { return t == JM_F32 || t == JM_F64; }
int jm_dtype_is_int(jm_dtype t) { return t == JM_I32 || t == JM_I64; }

int64_t jm_type_numel(const jm_type *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dim[i];
    return n;
}

int jm_type_equal(const jm_type *a, const jm_type *b) {
    if (a->dtype != b->dtype || a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return 0;
    return 1;
}

char *jm_type_str(const jm_type *t, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "%s[", jm_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? "," : "", t->dim[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

jm_type jm_type_make(jm_dtype dt, int rank, const int64_t *dims) {
    jm_type t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++) t.dim[i] = dims[i];
    return t;
}

jm_module *jm_module_new(jm_arena *a) {
    jm_module *m = jm_arena_alloc(a, sizeof *m);
    m->arena = a;
    return m;
}

int jm_graph_new(jm_module *m, int parent) {
    jm_graph g;
    memset(&g, 0, sizeof g);
    g.parent = parent;
    JM_VEC_PUSH(m->arena, m->graphs, m->ngraphs, m->capgraphs, g);
    return m->ngraphs - 1;
}

int jm_ir_add(jm_module *m, int g, jm_op op, const int *src, int nsrc, const jm_attr *attr,
              const jm_type *type, jm_loc loc, jm_diags *d) {
    jm_graph *gr = &m->graphs[g];
    for (int i = 0; i < nsrc; i++)
        if (src[i] < 0) return -1;      /* an operand already failed: stay quiet */
    jm_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.nsrc = nsrc;
    if (nsrc) {
        n.src = jm_arena_alloc(m->arena, sizeof(int) * (size_t)nsrc);
        memcpy(n.src, src, sizeof(int) * (size_t)nsrc);
    }
    if (attr) n.attr = *attr;
    if (type) n.type = *type;
    n.loc = loc;
    if (jm_shape_infer(m, gr, &n, d) != 0) return -1;
    JM_VEC_PUSH(m->arena, gr->node, gr->nnode, gr->capnode, n);
    return gr->nnode - 1;
}

int jm_module_find_program(const jm_module *m, const char *name) {
    for (int i = 0; i < m->nprograms; i++)
        if (strcmp(m->programs[i].name, name) == 0) return i;
    return -1;
}

int jm_module_find_global(const jm_module *m, const char *name) {
    for (int i = 0; i < m->nglobals; i++)
        if (strcmp(m->globals[i].name, name) == 0) return i;
    return -1;
}

/* ---- verifier ---------------------------------------------------------- */

static int jm_verify_graph(jm_module *m, int g, jm_diags *d, const char *where) {
    int bad = 0;
    jm_graph *gr = &m->graphs[g];
    for (int id = 0; id < gr->nnode; id++) {
        jm_node *n = &gr->node[id];
        if ((unsigned)n->op >= JM_OP_COUNT) {
            jm_diag_error(d, n->loc, "internal error (IR verifier, %s %%%d): bad op %d", where, id, (int)n->op);
            bad++;
            continue;
        }
        const jm_op_info *info = &jm_ops[n->op];
#define JM_BAD(...) do { jm_diag_error(d, n->loc, "internal error (IR verifier, %s %%%d %s): ", where, id, info->name); \
                         fprintf(d->out, "  " __VA_ARGS__); fputc('\n', d->out); bad++; } while (0)
        if (info->arity >= 0 && n->nsrc != info->arity) JM_BAD("has %d sources, op takes %d", n->nsrc, info->arity);
        for (int s = 0; s < n->nsrc; s++)
            if (n->src[s] < 0 || n->src[s] >= id) JM_BAD("source %d is %%%d: not an earlier node", s, n->src[s]);
        if (n->type.rank < 0 || n->type.rank > JM_MAX_RANK) JM_BAD("rank %d out of range", n->type.rank);
        for (int a = 0; a < n->type.rank; a++)
            if (n->type.dim[a] < 0) JM_BAD("negative dimension");
        if (bad) continue;
        /* The stored type must be what the shape rule computes today. */
        jm_node copy = *n;
        jm_diags quiet = *d;
        FILE *null = fopen("/dev/null", "w");
        if (null) quiet.out = null;
        if (jm_shape_infer(m, gr, &copy, &quiet) != 0 || !jm_type_equal(&copy.type, &n->type)) {
            char a[128], b[128];
            JM_BAD("stored type %s differs from the shape rule's %s", jm_type_str(&n->type, a, sizeof a),
                   jm_type_str(&copy.type, b, sizeof b));
        }
        if (null) fclose(null);
        if (n->op == JM_OP_LOOP) {
            int body = (int)n->attr.i[0];
            if (body <= g || body >= m->ngraphs || m->graphs[body].parent != g)
                JM_BAD("body graph %d is not a child of graph %d", body, g);
            else
                bad += jm_verify_graph(m, body, d, where);
        }
#undef JM_BAD
    }
    for (int r = 0; r < gr->nresults; r++)
        if (gr->results[r] < 0 || gr->results[r] >= gr->nnode) {
            jm_diag_error(d, jm_noloc, "internal error (IR verifier, %s): result %d of graph %d is invalid", where, r, g);
            bad++;
        }
    return bad;
}

int jm_ir_verify(jm_module *m, jm_diags *d) {
    int bad = 0;
    for (int p = 0; p < m->nprograms; p++) {
        jm_program *pr = &m->programs[p];
        bad += jm_verify_graph(m, pr->graph, d, pr->name);
        jm_graph *g = &m->graphs[pr->graph];
        for (int i = 0; i < pr->noutputs; i++)
            if (pr->outputs[i].node < 0 || pr->outputs[i].node >= g->nnode) {
                jm_diag_error(d, pr->loc, "internal error (IR verifier, %s): output '%s' is invalid", pr->name, pr->outputs[i].name);
                bad++;
            }
        for (int i = 0; i < pr->nwrites; i++) {
            jm_state_write *w = &pr->writes[i];
            if (w->node < 0 || w->node >= g->nnode || w->global < 0 || w->global >= m->nglobals ||
                !jm_type_equal(&g->node[w->node].type, &m->globals[w->global].type)) {
                jm_diag_error(d, w->loc, "internal error (IR verifier, %s): state write %d is invalid", pr->name, i);
                bad++;
            }
        }
    }
    return bad;
}

/* ---- dump ---------------------------------------------------------------- */

static void jm_dump_attr(const jm_node *n, FILE *out) {
    const jm_attr *a = &n->attr;
    switch (n->op) {
    case JM_OP_CONST: fprintf(out, " %.17g", a->f[0]); return;
    case JM_OP_LEAKY_RELU: fprintf(out, " {slope=%g}", a->f[0]); return;
    case JM_OP_CAST: fprintf(out, " {to=%s}", jm_dtype_name((jm_dtype)a->k)); return;
    case JM_OP_CONV2D:
        fprintf(out, " {stride=%" PRId64 "x%" PRId64 " pad=%" PRId64 "x%" PRId64 " dilation=%" PRId64 "x%" PRId64
                " groups=%" PRId64 "}", a->i[0], a->i[1], a->i[2], a->i[3], a->i[4], a->i[5], a->i[6]);
        return;
    case JM_OP_AVGPOOL2D: case JM_OP_MAXPOOL2D:
        fprintf(out, " {kernel=%" PRId64 "x%" PRId64 " stride=%" PRId64 "x%" PRId64 " pad=%" PRId64 "x%" PRId64 "}",
                a->i[0], a->i[1], a->i[2], a->i[3], a->i[4], a->i[5]);
        return;
    case JM_OP_SOFTMAX: case JM_OP_LOG_SOFTMAX: case JM_OP_CONCAT:
        fprintf(out, " {axis=%d}", a->k); return;
    case JM_OP_ONEHOT: fprintf(out, " {classes=%d}", a->k); return;
    case JM_OP_CROSS_ENTROPY: if (a->f[0] != 0) fprintf(out, " {smoothing=%g}", a->f[0]); return;
    case JM_OP_PAD: fprintf(out, " {value=%g}", a->f[0]); break;
    case JM_OP_RNG_UNIFORM: case JM_OP_RNG_NORMAL: case JM_OP_RNG_RANDINT: case JM_OP_RNG_BERNOULLI:
        fprintf(out, " {stream=%" PRId64 " a=%g b=%g}", a->i[0], a->f[0], a->f[1]); return;
    case JM_OP_LOOP:
        fprintf(out, " {body=g%" PRId64 " trips=%" PRId64 " carried=%d", a->i[0], a->i[1], a->k);
        if (a->ni > 2 && a->i[2] > 0) fprintf(out, " trips_knob=global%" PRId64, a->i[2] - 1);   /* the count is read at run time */
        fputc('}', out);
        return;
    case JM_OP_LOOP_OUT: case JM_OP_LOOP_ARG: fprintf(out, " {index=%d}", a->k); return;
    default: break;
    }
    if (a->ni) {
        fprintf(out, " [");
        for (int i = 0; i < a->ni; i++) fprintf(out, "%s%" PRId64, i ? "," : "", a->i[i]);
        fprintf(out, "]");
    }
}

static void jm_dump_graph(jm_module *m, int g, FILE *out, int indent) {
    jm_graph *gr = &m->graphs[g];
    char tb[128];
    for (int id = 0; id < gr->nnode; id++) {
        jm_node *n = &gr->node[id];
        fprintf(out, "%*s%%%d = %s", indent, "", id, jm_ops[n->op].name);
        if (n->name) fprintf(out, " \"%s\"", n->name);
        for (int s = 0; s < n->nsrc; s++) fprintf(out, "%s %%%d", s ? "," : "", n->src[s]);
        jm_dump_attr(n, out);
        if (n->type.dtype != JM_TUPLE) fprintf(out, " : %s", jm_type_str(&n->type, tb, sizeof tb));
        fputc('\n', out);
        if (n->op == JM_OP_LOOP) {
            int body = (int)n->attr.i[0];
            fprintf(out, "%*s  body g%d {\n", indent, "", body);
            jm_dump_graph(m, body, out, indent + 4);
            fprintf(out, "%*s    next", indent, "");
            for (int r = 0; r < m->graphs[body].nresults; r++)
                fprintf(out, "%s %%%d", r ? "," : "", m->graphs[body].results[r]);
            fprintf(out, "\n%*s  }\n", indent, "");
        }
    }
}

void jm_ir_dump(jm_module *m, const char *program, FILE *out) {
    char tb[128];
    for (int p = 0; p < m->nprograms; p++) {
        jm_program *pr = &m->programs[p];
        if (program && strcmp(program, pr->name) != 0) continue;
        fprintf(out, "program %s(", pr->name);
        jm_graph *g = &m->graphs[pr->graph];
        for (int i = 0; i < pr->ninputs; i++)
            fprintf(out, "%s%s: %s", i ? ", " : "", pr->inputs[i].name,
                    jm_type_str(&g->node[pr->inputs[i].node].type, tb, sizeof tb));
        fprintf(out, ") {\n");
        jm_dump_graph(m, pr->graph, out, 2);
        for (int i = 0; i < pr->nwrites; i++)
            fprintf(out, "  state %s := %%%d\n", m->globals[pr->writes[i].global].name, pr->writes[i].node);
        for (int i = 0; i < pr->noutputs; i++)
            fprintf(out, "  output %s = %%%d\n", pr->outputs[i].name, pr->outputs[i].node);
        fprintf(out, "}\n");
    }
}

void jm_module_retype(jm_module *m, jm_dtype from, jm_dtype to) {
    for (int i = 0; i < m->nglobals; i++)
        if (m->globals[i].type.dtype == from) m->globals[i].type.dtype = to;
    for (int g = 0; g < m->ngraphs; g++)
        for (int i = 0; i < m->graphs[g].nnode; i++) {
            jm_node *n = &m->graphs[g].node[i];
            if (n->type.dtype == from) n->type.dtype = to;
            if (n->op == JM_OP_CAST && n->attr.k == (int)from) n->attr.k = (int)to;
        }
    /* extern declarations keep their types: they are the C function's ABI, and
       its calls convert (an f32 parameter still receives floats) */
}

void jm_graph_replace(jm_module *m, int g, int tmp, const int *map) {
    jm_graph built = m->graphs[tmp];
    jm_graph *old = &m->graphs[g];
    for (int r = 0; r < old->nresults; r++) {
        int v = map[old->results[r]];
        JM_VEC_PUSH(m->arena, built.results, built.nresults, built.capresults, v);
    }
    built.parent = old->parent;
    *old = built;
    for (int p = 0; p < m->nprograms; p++) {
        jm_program *pr = &m->programs[p];
        if (pr->graph != g) continue;
        for (int k = 0; k < pr->ninputs; k++) pr->inputs[k].node = map[pr->inputs[k].node];
        for (int k = 0; k < pr->noutputs; k++) pr->outputs[k].node = map[pr->outputs[k].node];
        for (int k = 0; k < pr->nwrites; k++) pr->writes[k].node = map[pr->writes[k].node];
    }
    m->ngraphs--;
}

static uint64_t jm_hmix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0x100000001b3ULL;
}
static uint64_t jm_hstr(uint64_t h, const char *s) {
    for (; s && *s; s++) h = jm_hmix(h, (unsigned char)*s);
    return jm_hmix(h, 0xff);
}
static uint64_t jm_hdouble(uint64_t h, double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return jm_hmix(h, u);
}
static uint64_t jm_htype(uint64_t h, const jm_type *t) {
    h = jm_hmix(jm_hmix(h, (uint64_t)t->dtype), (uint64_t)t->rank);
    for (int i = 0; i < t->rank; i++) h = jm_hmix(h, (uint64_t)t->dim[i]);
    return h;
}

uint64_t jm_module_hash(const jm_module *m, const char *knob) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int g = 0; g < m->ngraphs; g++) {
        const jm_graph *gr = &m->graphs[g];
        h = jm_hmix(jm_hmix(h, (uint64_t)gr->nnode), (uint64_t)gr->parent);
        for (int r = 0; r < gr->nresults; r++) h = jm_hmix(h, (uint64_t)gr->results[r]);
        for (int i = 0; i < gr->nnode; i++) {
            const jm_node *n = &gr->node[i];
            h = jm_htype(jm_hmix(h, (uint64_t)n->op), &n->type);
            for (int k = 0; k < n->nsrc; k++) h = jm_hmix(h, (uint64_t)n->src[k]);
            h = jm_hmix(jm_hmix(h, (uint64_t)n->attr.ni), (uint64_t)n->attr.k);
            /* a loop whose trip count is a knob (i[2] != 0): the count is the knob's value */
            int knob_loop = n->op == JM_OP_LOOP && n->attr.ni > 2 && n->attr.i[2] > 0 && n->attr.i[2] <= m->nglobals && knob
                            && m->globals[n->attr.i[2] - 1].knob && strcmp(m->globals[n->attr.i[2] - 1].knob, knob) == 0;
            for (int k = 0; k < n->attr.ni && k < 24; k++) h = jm_hmix(h, knob_loop && k == 1 ? 0 : (uint64_t)n->attr.i[k]);
            h = jm_hdouble(jm_hdouble(h, n->attr.f[0]), n->attr.f[1]);
            h = jm_hstr(h, n->name);
        }
    }
    for (int i = 0; i < m->nglobals; i++) {
        const jm_global *gl = &m->globals[i];
        h = jm_htype(jm_hmix(jm_hstr(h, gl->name), (uint64_t)gl->kind), &gl->type);
        h = jm_hmix(h, (uint64_t)gl->init.kind);
        if (!gl->knob || !knob || strcmp(gl->knob, knob) != 0) h = jm_hdouble(jm_hdouble(h, gl->init.a), gl->init.b);
    }
    for (int p = 0; p < m->nprograms; p++) {
        const jm_program *pr = &m->programs[p];
        h = jm_hmix(jm_hstr(h, pr->name), (uint64_t)pr->graph);
        for (int i = 0; i < pr->ninputs; i++) h = jm_hmix(jm_hstr(h, pr->inputs[i].name), (uint64_t)pr->inputs[i].node);
        for (int i = 0; i < pr->noutputs; i++) h = jm_hmix(jm_hstr(h, pr->outputs[i].name), (uint64_t)pr->outputs[i].node);
        for (int i = 0; i < pr->nwrites; i++) h = jm_hmix(jm_hmix(h, (uint64_t)pr->writes[i].global), (uint64_t)pr->writes[i].node);
    }
    return h;
}
