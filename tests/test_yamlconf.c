/* test_yamlconf.c — core/yamlconf: scalar typing, nesting, positions in error messages, duplicate keys,
 * aliases, tags, limits. Pure C (no Lua). */
#include "../io/yamlconf.h"
#include "tap.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

static hb_yaml_t *load(const char *text) { return hb_yaml_load_string("t.yaml", text, strlen(text), err, sizeof err); }

/* the kind of a one-scalar document */
static hb_yaml_kind_t kind_of(const char *text) {
    hb_yaml_t *y = load(text);
    hb_yaml_kind_t k = y ? y->kind : (hb_yaml_kind_t)-1;
    hb_yaml_free(y);
    return k;
}

/* the error message of a document that must fail */
static int fails_with(const char *text, const char *msg) {
    hb_yaml_t *y = load(text);
    if (y) {
        hb_yaml_free(y);
        diag("no error for: %s", text);
        return 0;
    }
    if (!strstr(err, msg)) diag("got: %s", err);
    return strstr(err, msg) != NULL;
}

static void test_scalars(void) {
    static const struct { const char *text; hb_yaml_kind_t kind; } cases[] = {
        {"~", HB_YAML_NULL}, {"null", HB_YAML_NULL}, {"NULL", HB_YAML_NULL}, {"", HB_YAML_NULL},
        {"true", HB_YAML_BOOL}, {"False", HB_YAML_BOOL}, {"yes", HB_YAML_STR}, {"off", HB_YAML_STR},
        {"42", HB_YAML_INT}, {"-7", HB_YAML_INT}, {"+3", HB_YAML_INT}, {"1_000", HB_YAML_INT},
        {"0x1F", HB_YAML_INT}, {"0o17", HB_YAML_INT}, {"0b101", HB_YAML_INT},
        {"3.5", HB_YAML_FLOAT}, {"1e-3", HB_YAML_FLOAT}, {"1.0e+5", HB_YAML_FLOAT}, {".5", HB_YAML_FLOAT},
        {"2.", HB_YAML_FLOAT}, {".inf", HB_YAML_FLOAT}, {"-.Inf", HB_YAML_FLOAT}, {".nan", HB_YAML_FLOAT},
        {"99999999999999999999", HB_YAML_FLOAT},
        {"abc", HB_YAML_STR}, {"'42'", HB_YAML_STR}, {"\"true\"", HB_YAML_STR}, {"1.2.3", HB_YAML_STR},
        {"0x", HB_YAML_STR}, {"e5", HB_YAML_STR}, {"1e", HB_YAML_STR}, {"_1", HB_YAML_STR}, {"+.nan", HB_YAML_STR},
        {"!!str 42", HB_YAML_STR}, {"!!float 3", HB_YAML_FLOAT}, {"! 12", HB_YAML_STR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ok(kind_of(cases[i].text) == cases[i].kind, "'%s' is a %s", cases[i].text, hb_yaml_kind_name(cases[i].kind));

    hb_yaml_t *y = load("a: 0x1F\nb: -7\nc: 1_000\nd: 1e-3\ne: -.inf\nf: .nan\ng: true\nh: 9223372036854775807\n"
                        "i: -9223372036854775808\nj: 'it''s'\nk: \"tab\\there\"\n");
    ok(y && y->kind == HB_YAML_MAP && y->n == 11, "mapping of 11 keys");
    if (y) {
        ok(hb_yaml_get(y, "a")->integer == 31, "hex value");
        ok(hb_yaml_get(y, "b")->integer == -7, "negative value");
        ok(hb_yaml_get(y, "c")->integer == 1000, "underscores ignored");
        ok(hb_yaml_get(y, "d")->number == 1e-3, "float value");
        ok(isinf(hb_yaml_get(y, "e")->number) && hb_yaml_get(y, "e")->number < 0, "-inf");
        ok(isnan(hb_yaml_get(y, "f")->number), "nan");
        ok(hb_yaml_get(y, "g")->boolean == 1, "bool value");
        ok(hb_yaml_get(y, "h")->integer == INT64_MAX, "int64 max");
        ok(hb_yaml_get(y, "i")->integer == INT64_MIN, "int64 min");
        ok(!strcmp(hb_yaml_get(y, "j")->text, "it's"), "single-quoted escape");
        ok(!strcmp(hb_yaml_get(y, "k")->text, "tab\there"), "double-quoted escape");
        ok(!strcmp(hb_yaml_get(y, "a")->text, "0x1F"), "scalar text kept");
        ok(hb_yaml_get(y, "zz") == NULL, "absent key → NULL");
    }
    hb_yaml_free(y);
}

static void test_nesting(void) {
    const char *doc = "model:\n"
                      "  d_model: 64\n"
                      "  layers: [0, 3]\n"
                      "  attn: {window: 128, heads: 4}\n"
                      "train:\n"
                      "  lr: 3.0e-4\n"
                      "  groups:\n"
                      "    - name: a\n"
                      "    - name: b\n";
    hb_yaml_t *y = load(doc);
    ok(y != NULL, "nested document parses");
    if (!y) { diag("%s", err); return; }
    const hb_yaml_t *l = hb_yaml_path(y, "model.layers");
    ok(l && l->kind == HB_YAML_SEQ && l->n == 2 && l->items[1]->integer == 3, "flow sequence");
    ok(hb_yaml_path(y, "model.attn.window") && hb_yaml_path(y, "model.attn.window")->integer == 128, "flow mapping");
    ok(hb_yaml_path(y, "train.lr")->kind == HB_YAML_FLOAT, "nested float");
    const hb_yaml_t *g = hb_yaml_path(y, "train.groups");
    ok(g && g->n == 2 && !strcmp(hb_yaml_get(g->items[1], "name")->text, "b"), "sequence of mappings");
    ok(hb_yaml_path(y, "train.lr")->line == 6 && hb_yaml_path(y, "train.lr")->column == 3, "position of a key (6:3)");
    ok(hb_yaml_path(y, "train.nope") == NULL && hb_yaml_path(y, "model.d_model.x") == NULL, "missing paths → NULL");
    ok(!strcmp(y->keys[0], "model") && !strcmp(y->keys[1], "train"), "keys in document order");
    hb_yaml_free(y);

    y = load("base: &b {lr: 1, steps: 2}\ncopy: *b\nlist: [&x 5, *x]\n");
    ok(y && hb_yaml_path(y, "copy.steps") && hb_yaml_path(y, "copy.steps")->integer == 2, "alias copies a mapping");
    ok(y && hb_yaml_get(y, "list")->items[1]->integer == 5, "alias copies a scalar");
    hb_yaml_free(y);

    y = load("");
    ok(y && y->kind == HB_YAML_NULL, "empty document → null");
    hb_yaml_free(y);
    y = load("# only a comment\n");
    ok(y && y->kind == HB_YAML_NULL, "comment-only document → null");
    hb_yaml_free(y);
    y = load("---\na: 1\n...\n");
    ok(y && y->kind == HB_YAML_MAP, "explicit document markers");
    hb_yaml_free(y);
}

static void test_errors(void) {
    ok(fails_with("a: 1\nb: c: d\n", "t.yaml:2:5: mapping values are not allowed in this context"),
       "mapping value error with file:line:column");
    ok(fails_with("lr: 1\nsteps: 2\nlr: 3\n", "t.yaml:3:1: duplicate key 'lr' (first at line 1)"), "duplicate key");
    ok(fails_with("a:\n  x: 1\n  x: 2\n", "t.yaml:3:3: duplicate key 'x' (first at line 2)"), "nested duplicate key");
    ok(fails_with("a: [1, 2\n", "t.yaml:2:1: did not find expected ',' or ']'"), "unclosed flow sequence");
    ok(fails_with("a: 'open\n", "t.yaml:2:1: found unexpected end of stream"), "unclosed quote");
    ok(fails_with("a: 1\n---\nb: 2\n", "t.yaml:2:1: expected a single YAML document"), "two documents");
    ok(fails_with("a: *nope\n", "t.yaml:1:4: unknown alias '*nope'"), "unknown alias");
    ok(fails_with("a: &x [1, *x]\n", "unknown alias '*x'"), "self-referencing alias");
    ok(fails_with("? [1, 2]\n: v\n", "t.yaml:1:3: mapping keys must be scalars"), "complex key");
    ok(fails_with("a: 1\n<<: {b: 2}\n", "t.yaml:2:1: merge keys (<<) are not supported"), "merge key");
    ok(fails_with("a: !!int abc\n", "t.yaml:1:4: 'abc' is not a valid integer"), "!!int on a non-integer");
    ok(fails_with("a: !custom 1\n", "t.yaml:1:4: unsupported tag '!custom'"), "unknown tag");
    ok(fails_with("a:\n\tb: 1\n", "t.yaml:2:1: found character that cannot start any token"), "tab indentation");

    char deep[1000];
    memset(deep, '[', 600);
    deep[600] = 0;
    ok(fails_with(deep, "nesting deeper than 200 levels"), "deep nesting is capped");

    /* billion laughs: 10 levels of 10 aliases */
    char bomb[4096] = "a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n";
    for (int i = 1; i <= 9; i++) {
        char line[256];
        snprintf(line, sizeof line, "a%d: &a%d [*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d]\n", i, i, i - 1, i - 1,
                 i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
        strcat(bomb, line);
    }
    ok(fails_with(bomb, "document too large"), "alias expansion is capped");

    hb_yaml_t *y = hb_yaml_load_file("/nonexistent/config.yaml", err, sizeof err);
    ok(!y && !strcmp(err, "/nonexistent/config.yaml: No such file or directory"), "missing file names the path");
    y = hb_yaml_load_string("t.yaml", "a: \xff\xfe\n", 7, err, sizeof err);
    ok(!y && strstr(err, "t.yaml: byte") && strstr(err, "UTF-8"), "invalid UTF-8 is a reader error (%s)", err);
    hb_yaml_free(y);
}

static void test_file(void) {
    char path[] = "/tmp/hb_yamlconf_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { ok(0, "mkstemp"); return; }
    const char *doc = "train:\n  lr: 0.001\n  steps: 100\n  bad: [1,\n";
    ok(write(fd, doc, strlen(doc)) == (ssize_t)strlen(doc), "wrote a temporary file");
    close(fd);
    hb_yaml_t *y = hb_yaml_load_file(path, err, sizeof err);
    char want[128];
    snprintf(want, sizeof want, "%s:5:1: ", path);
    ok(!y && !strncmp(err, want, strlen(want)), "file error names path:line:col (%s)", err);
    hb_yaml_free(y);
    FILE *f = fopen(path, "w");
    fputs("train:\n  lr: 0.001\n  steps: 100\n", f);
    fclose(f);
    y = hb_yaml_load_file(path, err, sizeof err);
    ok(y && hb_yaml_path(y, "train.steps")->integer == 100, "file loads");
    hb_yaml_free(y);
    unlink(path);
}

int main(void) {
    test_scalars();
    test_nesting();
    test_errors();
    test_file();
    return tap_done();
}
