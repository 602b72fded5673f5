/* yamlconf.c — libyaml's event parser folded into an hb_yaml_t tree (see yamlconf.h for the types).
 *
 * One recursive function per event kind: parse_node reads the event that starts a node and, for a
 * collection, the events up to its end. Every node and string is allocated here and owned by the tree;
 * on any error the partial tree is freed and the first message wins. Nesting is capped (MAX_DEPTH) so a
 * hostile "[[[[..." cannot exhaust the C stack, and node copies made by aliases are capped (MAX_NODES)
 * so a "billion laughs" document fails instead of eating memory.
 */
#include "yamlconf.h"
#include "../kernels/alloc.h"
#include "errfmt.h"
#include "readfile.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 200
#define MAX_NODES 1000000

typedef struct {
    char *name;
    hb_yaml_t *node; /* owned by the tree */
} anchor_t;

/* A hash table of indices into an array of names (open addressing, linear probing, at most half full):
 * duplicate keys of a mapping and anchor lookups take O(1) on average, so a document of n keys loads in
 * O(n) instead of O(n^2) (40 000 keys took seconds with linear scans, 10^6 minutes). */
typedef struct {
    size_t *slot;       /* index + 1, 0 = empty */
    size_t cap, n;      /* cap: 0 or a power of two */
} htab_t;
typedef const char *(*name_fn)(const void *owner, size_t i);

static size_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;       /* FNV-1a */
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211ULL; }
    return (size_t)(h ^ (h >> 29));
}

/* The slot where key is, or where it would go (*slot == 0). t->cap must be > 0. */
static size_t *htab_slot(const htab_t *t, const char *key, name_fn name, const void *owner) {
    for (size_t i = hash_str(key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
        if (!t->slot[i] || !strcmp(name(owner, t->slot[i] - 1), key)) return &t->slot[i];
}

/* Room for one more entry (grows and rehashes at half full). Returns 0 or -1 (out of memory). */
static int htab_reserve(htab_t *t, name_fn name, const void *owner) {
    if (2 * (t->n + 1) <= t->cap) return 0;
    htab_t g = {hb_calloc(t->cap ? 2 * t->cap : 16, sizeof(size_t)), t->cap ? 2 * t->cap : 16, t->n};
    if (!g.slot) return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i]) *htab_slot(&g, name(owner, t->slot[i] - 1), name, owner) = t->slot[i];
    free(t->slot);
    *t = g;
    return 0;
}

typedef struct {
    yaml_parser_t parser;
    const char *name;   /* file name for messages */
    char *err;
    size_t errlen;
    int failed;
    anchor_t *anchors;  /* every anchor defined, in order (a redefinition shadows the earlier one) */
    size_t nanchors, capanchors;
    htab_t anchor_tab;  /* name → its latest definition in anchors */
    size_t nodes;
} ctx_t;

static const char *anchor_name(const void *owner, size_t i) { return ((const anchor_t *)owner)[i].name; }
static const char *key_name(const void *owner, size_t i) { return ((char *const *)owner)[i]; }

/* The node of the latest anchor called name, or NULL. */
static const hb_yaml_t *find_anchor(const ctx_t *c, const char *name) {
    if (!c->anchor_tab.cap) return NULL;
    size_t *s = htab_slot(&c->anchor_tab, name, anchor_name, c->anchors);
    return *s ? c->anchors[*s - 1].node : NULL;
}

static void fail(ctx_t *c, size_t line, size_t col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(ctx_t *c, size_t line, size_t col, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    if (!c->err || !c->errlen) return;
    int k = snprintf(c->err, c->errlen, "%s:%zu:%zu: ", c->name, line + 1, col + 1);
    if (k < 0 || (size_t)k >= c->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

/* libyaml's own error: "file:line:col: problem (context at line L, column C)". */
static void fail_parser(ctx_t *c) {
    yaml_parser_t *p = &c->parser;
    if (c->failed) return;
    if (p->error == YAML_MEMORY_ERROR) {
        c->failed = 1;
        hb_errfmt(c->err, c->errlen, "%s: out of memory", c->name);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        c->failed = 1;
        hb_errfmt(c->err, c->errlen, "%s: byte %zu: %s", c->name, p->problem_offset,
                  p->problem ? p->problem : "unreadable input");
        return;
    }
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context)
        fail(c, p->problem_mark.line, p->problem_mark.column, "%s (%s at line %zu, column %zu)", problem, p->context,
             p->context_mark.line + 1, p->context_mark.column + 1);
    else fail(c, p->problem_mark.line, p->problem_mark.column, "%s", problem);
}

static int next_event(ctx_t *c, yaml_event_t *ev) {
    if (!yaml_parser_parse(&c->parser, ev)) {
        fail_parser(c);
        return -1;
    }
    return 0;
}

const char *hb_yaml_kind_name(hb_yaml_kind_t kind) {
    switch (kind) {
    case HB_YAML_NULL: return "null";
    case HB_YAML_BOOL: return "boolean";
    case HB_YAML_INT: return "integer";
    case HB_YAML_FLOAT: return "float";
    case HB_YAML_STR: return "string";
    case HB_YAML_SEQ: return "sequence";
    case HB_YAML_MAP: return "mapping";
    }
    return "?";
}

void hb_yaml_free(hb_yaml_t *y) {
    if (!y) return;
    for (size_t i = 0; i < y->n; i++) {
        hb_yaml_free(y->items[i]);
        if (y->keys) free(y->keys[i]);
    }
    free(y->items);
    free(y->keys);
    free(y->text);
    free(y);
}

static hb_yaml_t *new_node(ctx_t *c, hb_yaml_kind_t kind, yaml_mark_t m) {
    if (++c->nodes > MAX_NODES) {
        fail(c, m.line, m.column, "document too large (more than %d nodes after expanding aliases)", MAX_NODES);
        return NULL;
    }
    hb_yaml_t *y = hb_calloc(1, sizeof *y);
    if (!y) {
        fail(c, m.line, m.column, "out of memory");
        return NULL;
    }
    y->kind = kind;
    y->line = (int)m.line + 1;
    y->column = (int)m.column + 1;
    return y;
}

/* ---- scalar typing ------------------------------------------------------------------------------- */
static int is_one_of(const char *s, const char *const *words) {
    for (; *words; words++)
        if (!strcmp(s, *words)) return 1;
    return 0;
}

/* Integer per the header's grammar. Returns 1 and sets *v, or 2 when it is an integer too large for
 * int64 (the caller makes it a float), or 0 when s is not an integer. */
static int parse_int(const char *s, int64_t *v) {
    int neg = 0;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
        base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
        s += 2;
        if (!*s) return 0;
    } else if (!(*s >= '0' && *s <= '9')) return 0;
    uint64_t acc = 0;
    int overflow = 0;
    for (; *s; s++) {
        unsigned d;
        if (*s == '_' && base == 10) continue;
        if (*s >= '0' && *s <= '9') d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f') d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F') d = (unsigned)(*s - 'A' + 10);
        else return 0;
        if (d >= base) return 0;
        if (acc > (UINT64_MAX - d) / base) overflow = 1;
        else acc = acc * base + d;
    }
    if (overflow || acc > (uint64_t)INT64_MAX + (uint64_t)neg) return 2;
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 1;
}

/* Float per the header's grammar; 1 and *v, or 0 (not a float), or -1 (out of memory). */
static int parse_float(const char *s, double *v) {
    static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    if (is_one_of(p, inf)) { *v = neg ? -INFINITY : INFINITY; return 1; }
    if (p == s && is_one_of(p, nan)) { *v = NAN; return 1; }
    /* mantissa: .digits | digits[.digits] ; then optional exponent */
    size_t n = strlen(s);
    char *buf = hb_malloc(n + 1), *b = buf;
    if (!buf) return -1;
    const char *q = s;
    if (*q == '-' || *q == '+') *b++ = *q++;
    int digits = 0;
    if (*q == '.') {
        *b++ = *q++;
        while (*q >= '0' && *q <= '9') { *b++ = *q++; digits++; }
    } else {
        if (!(*q >= '0' && *q <= '9')) { free(buf); return 0; }
        while ((*q >= '0' && *q <= '9') || *q == '_') { if (*q != '_') { *b++ = *q; digits++; } q++; }
        if (*q == '.') {
            *b++ = *q++;
            while ((*q >= '0' && *q <= '9') || *q == '_') { if (*q != '_') *b++ = *q; q++; }
        }
    }
    if (!digits) { free(buf); return 0; }
    if (*q == 'e' || *q == 'E') {
        *b++ = *q++;
        if (*q == '-' || *q == '+') *b++ = *q++;
        if (!(*q >= '0' && *q <= '9')) { free(buf); return 0; }
        while (*q >= '0' && *q <= '9') *b++ = *q++;
    }
    *b = 0;
    if (*q) { free(buf); return 0; }
    errno = 0;
    char *end;
    *v = strtod(buf, &end);
    int ok = *end == 0;
    free(buf);
    return ok;
}

static const char *const NULLS[] = {"~", "null", "Null", "NULL", "", NULL};
static const char *const TRUES[] = {"true", "True", "TRUE", NULL};
static const char *const FALSES[] = {"false", "False", "FALSE", NULL};

/* Type a plain scalar (or one with an explicit core tag) into y. Returns 0, or -1 with a message. */
static int type_scalar(ctx_t *c, hb_yaml_t *y, const char *tag, int plain, yaml_mark_t m) {
    const char *s = y->text;
    int64_t iv;
    double fv;
    if (tag && !strcmp(tag, "!")) tag = YAML_STR_TAG; /* non-specific tag: a string */
    if (tag && !strcmp(tag, YAML_STR_TAG)) { y->kind = HB_YAML_STR; return 0; }
    if (!tag && !plain) { y->kind = HB_YAML_STR; return 0; }
    int want = tag ? (!strcmp(tag, YAML_NULL_TAG) ? HB_YAML_NULL : !strcmp(tag, YAML_BOOL_TAG) ? HB_YAML_BOOL
                      : !strcmp(tag, YAML_INT_TAG) ? HB_YAML_INT : !strcmp(tag, YAML_FLOAT_TAG) ? HB_YAML_FLOAT : -1)
                   : -2;
    if (want == -1) {
        fail(c, m.line, m.column, "unsupported tag '%s'", tag);
        return -1;
    }
    int got;
    if (strlen(s) != y->len) got = HB_YAML_STR;
    else if (is_one_of(s, NULLS)) got = HB_YAML_NULL;
    else if (is_one_of(s, TRUES)) { got = HB_YAML_BOOL; y->boolean = 1; }
    else if (is_one_of(s, FALSES)) { got = HB_YAML_BOOL; y->boolean = 0; }
    else {
        int r = parse_int(s, &iv);
        if (r == 1) { got = HB_YAML_INT; y->integer = iv; }
        else if (r == 2) {
            /* too big for int64: keep the value as a float */
            char *t = hb_malloc(strlen(s) + 1), *d = t;
            if (!t) { fail(c, m.line, m.column, "out of memory"); return -1; }
            for (const char *p = s; *p; p++) if (*p != '_') *d++ = *p;
            *d = 0;
            got = HB_YAML_FLOAT;
            const char *q = t + (*t == '-' || *t == '+');
            if (q[0] == '0' && (q[1] == 'o' || q[1] == 'b')) { /* strtod reads neither prefix: it gave 0 */
                double v = 0, base = q[1] == 'o' ? 8 : 2;
                for (q += 2; *q; q++) v = v * base + (*q - '0');
                y->number = *t == '-' ? -v : v;
            } else y->number = strtod(t, NULL);
            free(t);
        } else if ((r = parse_float(s, &fv)) == 1) { got = HB_YAML_FLOAT; y->number = fv; }
        else if (r < 0) { fail(c, m.line, m.column, "out of memory"); return -1; }
        else got = HB_YAML_STR;
    }
    if (want == HB_YAML_FLOAT && got == HB_YAML_INT) { got = HB_YAML_FLOAT; y->number = (double)y->integer; }
    if (want >= 0 && want != got) {
        fail(c, m.line, m.column, "'%s' is not a valid %s", s, hb_yaml_kind_name((hb_yaml_kind_t)want));
        return -1;
    }
    y->kind = (hb_yaml_kind_t)got;
    return 0;
}

/* ---- anchors and aliases --------------------------------------------------------------------------- */
static int add_anchor(ctx_t *c, const char *name, hb_yaml_t *node, yaml_mark_t m) {
    if (c->nanchors == c->capanchors) {
        size_t cap = c->capanchors ? 2 * c->capanchors : 8;
        anchor_t *a = hb_realloc(c->anchors, cap * sizeof *a);
        if (!a) { fail(c, m.line, m.column, "out of memory"); return -1; }
        c->anchors = a;
        c->capanchors = cap;
    }
    char *n = hb_strdup(name);
    if (!n) { fail(c, m.line, m.column, "out of memory"); return -1; }
    c->anchors[c->nanchors].name = n;
    c->anchors[c->nanchors].node = node;
    c->nanchors++;
    if (htab_reserve(&c->anchor_tab, anchor_name, c->anchors)) { fail(c, m.line, m.column, "out of memory"); return -1; }
    size_t *slot = htab_slot(&c->anchor_tab, n, anchor_name, c->anchors);
    if (!*slot) c->anchor_tab.n++;
    *slot = c->nanchors;                       /* the latest definition wins */
    return 0;
}

static hb_yaml_t *copy_node(ctx_t *c, const hb_yaml_t *src, yaml_mark_t m) {
    hb_yaml_t *y = new_node(c, src->kind, m);
    if (!y) return NULL;
    y->len = src->len;
    y->boolean = src->boolean;
    y->integer = src->integer;
    y->number = src->number;
    if (src->text) {
        y->text = hb_malloc(src->len + 1);
        if (!y->text) goto oom;
        memcpy(y->text, src->text, src->len + 1);
    }
    if (src->n) {
        y->items = hb_calloc(src->n, sizeof *y->items);
        if (!y->items) goto oom;
        if (src->keys && !(y->keys = hb_calloc(src->n, sizeof *y->keys))) goto oom;
        for (size_t i = 0; i < src->n; i++) {
            y->n = i + 1;
            if (!(y->items[i] = copy_node(c, src->items[i], m))) { hb_yaml_free(y); return NULL; }
            if (src->keys && !(y->keys[i] = hb_strdup(src->keys[i]))) goto oom;
        }
    }
    return y;
oom:
    fail(c, m.line, m.column, "out of memory");
    hb_yaml_free(y);
    return NULL;
}

/* ---- the tree builder ------------------------------------------------------------------------------ */
static int append(ctx_t *c, hb_yaml_t *parent, size_t *cap, hb_yaml_t *item, char *key, yaml_mark_t m) {
    if (parent->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 4;
        hb_yaml_t **it = hb_realloc(parent->items, nc * sizeof *it);
        if (!it) goto oom;
        parent->items = it;
        if (parent->kind == HB_YAML_MAP) {
            char **k = hb_realloc(parent->keys, nc * sizeof *k);
            if (!k) goto oom;
            parent->keys = k;
        }
        *cap = nc;
    }
    parent->items[parent->n] = item;
    if (parent->kind == HB_YAML_MAP) parent->keys[parent->n] = key;
    parent->n++;
    return 0;
oom:
    fail(c, m.line, m.column, "out of memory");
    hb_yaml_free(item);
    free(key);
    return -1;
}

static hb_yaml_t *parse_node(ctx_t *c, yaml_event_t *ev, int depth);
static int parse_children_into(ctx_t *c, hb_yaml_t *y, int depth, htab_t *keys);

/* Parse the events of a collection whose start event was ev (already consumed into y). */
static int parse_children(ctx_t *c, hb_yaml_t *y, int depth) {
    htab_t keys = {0};                         /* a mapping's keys, for duplicates */
    int rc = parse_children_into(c, y, depth, &keys);
    free(keys.slot);
    return rc;
}

static int parse_children_into(ctx_t *c, hb_yaml_t *y, int depth, htab_t *keys) {
    size_t cap = 0;
    yaml_event_type_t end = y->kind == HB_YAML_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    for (;;) {
        yaml_event_t ev;
        size_t kslot = 0;
        if (next_event(c, &ev)) return -1;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        char *key = NULL;
        yaml_mark_t km = ev.start_mark;
        if (y->kind == HB_YAML_MAP) {
            /* the key: a scalar, or an alias of one */
            const hb_yaml_t *alias = NULL;
            if (ev.type == YAML_ALIAS_EVENT) {
                alias = find_anchor(c, (char *)ev.data.alias.anchor);
                if (!alias) fail(c, km.line, km.column, "unknown alias '*%s'", (char *)ev.data.alias.anchor);
                else if (alias->kind >= HB_YAML_SEQ) fail(c, km.line, km.column, "mapping keys must be scalars");
                else key = hb_strdup(alias->text);
            } else if (ev.type != YAML_SCALAR_EVENT) {
                fail(c, km.line, km.column, "mapping keys must be scalars, got a %s",
                     ev.type == YAML_MAPPING_START_EVENT ? "mapping" : "sequence");
            } else if (ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp((char *)ev.data.scalar.value, "<<")) {
                fail(c, km.line, km.column, "merge keys (<<) are not supported");
            } else key = hb_strdup((char *)ev.data.scalar.value);
            yaml_event_delete(&ev);
            if (c->failed) { free(key); return -1; }
            if (!key) { fail(c, km.line, km.column, "out of memory"); return -1; }
            if (htab_reserve(keys, key_name, y->keys)) {
                fail(c, km.line, km.column, "out of memory");
                free(key);
                return -1;
            }
            size_t *slot = htab_slot(keys, key, key_name, y->keys);
            if (*slot) {
                fail(c, km.line, km.column, "duplicate key '%s' (first at line %d)", key, y->items[*slot - 1]->line);
                free(key);
                return -1;
            }
            kslot = (size_t)(slot - keys->slot);   /* filled once the key is in y->keys (the table does not move) */
            if (next_event(c, &ev)) { free(key); return -1; }
        }
        hb_yaml_t *item = parse_node(c, &ev, depth + 1);
        if (!item) { free(key); return -1; }
        if (y->kind == HB_YAML_MAP) { item->line = (int)km.line + 1; item->column = (int)km.column + 1; }
        if (append(c, y, &cap, item, key, km)) return -1;
        if (y->kind == HB_YAML_MAP) { keys->slot[kslot] = y->n; keys->n++; }
    }
}

/* Build the node that starts with ev (consumed here, including a collection's remaining events). */
static hb_yaml_t *parse_node(ctx_t *c, yaml_event_t *ev, int depth) {
    yaml_mark_t m = ev->start_mark;
    hb_yaml_t *y = NULL;
    const char *anchor = NULL;
    if (depth > MAX_DEPTH) {
        fail(c, m.line, m.column, "nesting deeper than %d levels", MAX_DEPTH);
        yaml_event_delete(ev);
        return NULL;
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const hb_yaml_t *src = find_anchor(c, (char *)ev->data.alias.anchor);
        if (!src) fail(c, m.line, m.column, "unknown alias '*%s'", (char *)ev->data.alias.anchor);
        else y = copy_node(c, src, m);
        break;
    }
    case YAML_SCALAR_EVENT: {
        anchor = (const char *)ev->data.scalar.anchor;
        if (!(y = new_node(c, HB_YAML_STR, m))) break;
        y->len = ev->data.scalar.length;
        if (!(y->text = hb_malloc(y->len + 1))) { fail(c, m.line, m.column, "out of memory"); break; }
        memcpy(y->text, ev->data.scalar.value, y->len);
        y->text[y->len] = 0;
        type_scalar(c, y, (const char *)ev->data.scalar.tag, ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, m);
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int map = ev->type == YAML_MAPPING_START_EVENT;
        const char *tag = (const char *)(map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
        anchor = (const char *)(map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
        if (tag && strcmp(tag, "!") && strcmp(tag, map ? YAML_MAP_TAG : YAML_SEQ_TAG)) {
            fail(c, m.line, m.column, "unsupported tag '%s'", tag);
            break;
        }
        y = new_node(c, map ? HB_YAML_MAP : HB_YAML_SEQ, m);
        break;
    }
    default:
        fail(c, m.line, m.column, "unexpected YAML event %d", (int)ev->type);
        break;
    }
    int collection = ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT;
    /* the anchor name lives in ev: copy it before the event goes */
    char *aname = y && anchor ? hb_strdup(anchor) : NULL;
    yaml_event_delete(ev);
    if (y && anchor && !aname) fail(c, m.line, m.column, "out of memory");
    /* the anchor is registered once the node is complete, so a node cannot contain itself ("*x" inside
     * "&x" is an unknown alias); on failure the anchor table may point into freed nodes, but nothing
     * reads it afterwards */
    if (c->failed || (collection && parse_children(c, y, depth)) || (aname && add_anchor(c, aname, y, m))) {
        free(aname);
        hb_yaml_free(y);
        return NULL;
    }
    free(aname);
    return y;
}

static hb_yaml_t *parse_stream(ctx_t *c) {
    yaml_event_t ev;
    hb_yaml_t *root = NULL;
    if (next_event(c, &ev)) return NULL; /* STREAM_START */
    yaml_event_delete(&ev);
    if (next_event(c, &ev)) return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) { /* an empty file */
        yaml_mark_t m = ev.start_mark;
        yaml_event_delete(&ev);
        m.line = m.column = 0;
        return new_node(c, HB_YAML_NULL, m);
    }
    yaml_event_delete(&ev); /* DOCUMENT_START */
    if (next_event(c, &ev)) return NULL;
    if (!(root = parse_node(c, &ev, 0))) return NULL;
    if (next_event(c, &ev)) goto bad; /* DOCUMENT_END */
    yaml_event_delete(&ev);
    if (next_event(c, &ev)) goto bad;
    if (ev.type != YAML_STREAM_END_EVENT) {
        fail(c, ev.start_mark.line, ev.start_mark.column, "expected a single YAML document, found another one");
        yaml_event_delete(&ev);
        goto bad;
    }
    yaml_event_delete(&ev);
    return root;
bad:
    hb_yaml_free(root);
    return NULL;
}

static hb_yaml_t *run(ctx_t *c) {
    hb_yaml_t *root = parse_stream(c);
    for (size_t i = 0; i < c->nanchors; i++) free(c->anchors[i].name);
    free(c->anchors);
    free(c->anchor_tab.slot);
    yaml_parser_delete(&c->parser);
    if (c->failed) {
        hb_yaml_free(root);
        return NULL;
    }
    return root;
}

hb_yaml_t *hb_yaml_load_string(const char *name, const char *text, size_t len, char *err, size_t errlen) {
    ctx_t c = {.name = name ? name : "<string>", .err = err, .errlen = errlen};
    if (err && errlen) err[0] = 0;
    if (!yaml_parser_initialize(&c.parser)) {
        hb_errfmt(err, errlen, "%s: out of memory", c.name);
        return NULL;
    }
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    return run(&c);
}

hb_yaml_t *hb_yaml_load_file(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    struct stat sb;
    int fd = hb_open_regular(path, &sb, err, errlen);   /* no FIFO or device: never blocks */
    if (fd == -1) hb_errfmt(err, errlen, "%s: %s", path, strerror(errno));
    if (fd < 0) return NULL;
    size_t len;
    char *text = hb_read_fd(fd, path, &sb, HB_READ_MAX_YAML, &len, err, errlen);
    if (!text) return NULL;
    hb_yaml_t *root = hb_yaml_load_string(path, text, len, err, errlen);
    free(text);
    return root;
}

const hb_yaml_t *hb_yaml_get(const hb_yaml_t *map, const char *key) {
    if (!map || map->kind != HB_YAML_MAP || !key) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) return map->items[i];
    return NULL;
}

const hb_yaml_t *hb_yaml_path(const hb_yaml_t *root, const char *dotted) {
    const hb_yaml_t *y = root;
    const char *p = dotted;
    char part[256];
    while (y && p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        y = hb_yaml_get(y, part);
        p = dot ? dot + 1 : NULL;
    }
    return y;
}
