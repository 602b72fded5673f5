/* yaml.c — fuzz target: YAML configuration files (io/yamlconf.c over libyaml's event parser: scalar
 * typing, tags, anchors and aliases, duplicate keys, nesting and alias-expansion limits).
 *
 * Entry points: hb_yaml_load_string on the input bytes and hb_yaml_load_file on the same bytes written
 * to config.yaml (libyaml's file reader is a different input path). Besides "no crash, no sanitizer
 * report, no leak", it checks (FZ_CHECK aborts when one fails):
 *   - both loaders agree: both fail with the same message (after the file name), or both give equal
 *     trees (kinds, texts, values, keys, line and column of every node);
 *   - a failure leaves a message "name:..." that starts with the name given;
 *   - every node is well formed: a known kind, line/column >= 1, scalars have NUL-terminated text of
 *     len bytes, booleans are 0/1, integers are canonical for a decimal text, collections have items,
 *     mapping keys are unique and hb_yaml_get finds each item by its key, and hb_yaml_path agrees
 *     for dotted paths of the first keys.
 * Run: make fuzz FUZZ_TARGETS=yaml (seeds: tests/fuzz/corpus/yaml; -max_len 4096).
 */
#include "../../io/yamlconf.h"
#include "fuzz.h"
#include <inttypes.h>
#include <math.h>

static void check_node(const hb_yaml_t *y, int depth) {
    FZ_CHECK(y->kind >= HB_YAML_NULL && y->kind <= HB_YAML_MAP, "node kind %d", (int)y->kind);
    FZ_CHECK(y->line >= 1 && y->column >= 1, "position %d:%d", y->line, y->column);
    FZ_CHECK(depth <= 202, "depth %d beyond the nesting limit", depth);
    if (y->kind == HB_YAML_NULL && !y->text) { /* an empty document */
        FZ_CHECK(y->len == 0 && y->n == 0 && depth == 0, "a NULL node without text inside a tree");
        return;
    }
    if (y->kind < HB_YAML_SEQ) {
        FZ_CHECK(y->text && y->text[y->len] == 0 && strlen(y->text) <= y->len, "scalar text at %d:%d", y->line,
                 y->column);
        FZ_CHECK(y->n == 0, "scalar with children");
        if (y->kind == HB_YAML_BOOL) FZ_CHECK(y->boolean == 0 || y->boolean == 1, "boolean %d", y->boolean);
        if (y->kind == HB_YAML_INT) {
            /* a plain decimal without underscores or sign must read back to the same text */
            const char *s = y->text;
            int plain = *s >= '1' && *s <= '9';
            for (const char *p = s; *p && plain; p++) plain = *p >= '0' && *p <= '9';
            if (plain) {
                char buf[32];
                snprintf(buf, sizeof buf, "%" PRId64, y->integer);
                FZ_CHECK(!strcmp(buf, s), "integer '%s' read as %s", s, buf);
            }
        }
        return;
    }
    FZ_CHECK(y->n == 0 || y->items, "collection without items");
    for (size_t i = 0; i < y->n; i++) {
        FZ_CHECK(y->items[i], "NULL item %zu", i);
        check_node(y->items[i], depth + 1);
        if (y->kind == HB_YAML_MAP) {
            FZ_CHECK(y->keys && y->keys[i], "NULL key %zu", i);
            FZ_CHECK(hb_yaml_get(y, y->keys[i]) == y->items[i], "key '%s' does not find its item", y->keys[i]);
        }
    }
}

static void same(const hb_yaml_t *a, const hb_yaml_t *b) {
    FZ_CHECK(a->kind == b->kind && a->line == b->line && a->column == b->column && a->n == b->n,
             "string and file trees differ at %d:%d", a->line, a->column);
    if (a->kind < HB_YAML_SEQ) {
        FZ_CHECK(a->len == b->len && (a->text ? b->text && !memcmp(a->text, b->text, a->len) : !b->text), "scalar text differs at %d:%d", a->line,
                 a->column);
        FZ_CHECK(a->boolean == b->boolean && a->integer == b->integer &&
                     (a->number == b->number || (isnan(a->number) && isnan(b->number))),
                 "scalar value differs at %d:%d", a->line, a->column);
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->kind == HB_YAML_MAP) FZ_CHECK(!strcmp(a->keys[i], b->keys[i]), "keys differ");
        same(a->items[i], b->items[i]);
    }
}

/* hb_yaml_path along the first key of each level (keys without '.'; at most 255 bytes each). */
static void check_path(const hb_yaml_t *root) {
    char path[1024] = "";
    size_t n = 0;
    const hb_yaml_t *y = root;
    while (y && y->kind == HB_YAML_MAP && y->n) {
        const char *k = y->keys[0];
        size_t kl = strlen(k);
        if (strchr(k, '.') || kl == 0 || kl > 255 || n + kl + 2 > sizeof path) return;
        if (n) path[n++] = '.';
        memcpy(path + n, k, kl + 1);
        n += kl;
        y = y->items[0];
        FZ_CHECK(hb_yaml_path(root, path) == y, "hb_yaml_path('%s') disagrees", path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_file("config.yaml");
    char e1[512], e2[512];
    hb_yaml_t *a = hb_yaml_load_string("config.yaml", (const char *)data, size, e1, sizeof e1);
    fz_put(path, data, size);
    hb_yaml_t *b = hb_yaml_load_file(path, e2, sizeof e2);
    if (!a || !b) {
        FZ_CHECK(!a && !b, "only one loader failed: string '%s', file '%s'", a ? "" : e1, b ? "" : e2);
        FZ_CHECK(!strncmp(e1, "config.yaml:", 12) && e1[12], "message without the name: '%s'", e1);
        FZ_CHECK(!strncmp(e2, path, strlen(path)) && e2[strlen(path)] == ':', "message without the path: '%s'", e2);
        /* the same problem, after the name (a reader error at a byte offset may differ: skip those) */
        FZ_CHECK(!strcmp(e1 + 11, e2 + strlen(path)) || strstr(e1, ": byte "), "messages differ: '%s' / '%s'", e1,
                 e2);
        return 0;
    }
    check_node(a, 0);
    same(a, b);
    check_path(a);
    hb_yaml_free(a);
    hb_yaml_free(b);
    return 0;
}
