/* yamlconf.h — YAML configuration files (libyaml) as a small generic tree.
 *
 * A document becomes a tree of hb_yaml_t nodes: mappings, sequences and typed scalars. Plain (unquoted)
 * scalars get a type from their text, the YAML core schema that YAML 1.1 and 1.2 agree on:
 *   null   ~  null Null NULL  and the empty scalar
 *   bool   true True TRUE false False FALSE     (yes/no/on/off stay strings: no "Norway problem")
 *   int    decimal [-+]?[0-9][0-9_]*  (underscores ignored, "010" is ten), 0x.., 0o.., 0b..
 *   float  [-+]?(.[0-9]+|[0-9][0-9_]*(.[0-9_]*)?)([eE][-+]?[0-9]+)?  and .inf -.inf .nan (any case form)
 *   string everything else
 * Quoted scalars are always strings. Explicit tags !!str !!int !!float !!bool !!null force a type (an
 * error when the text does not fit); other tags are rejected. Aliases (*name) copy the anchored node.
 * Merge keys (<<), complex (non-scalar) keys and multi-document streams are rejected, as are duplicate
 * keys in one mapping. Integers beyond int64 become floats.
 *
 * Errors are values: loaders return NULL and write "file:line:column: problem" into err (errlen bytes,
 * always NUL-terminated; err may be NULL), e.g.
 *   "config.yaml:3:5: mapping values are not allowed in this context"
 *   "config.yaml:4:1: duplicate key 'lr' (first at line 2)"
 * Lines and columns are 1-based. Nothing here prints, exits or includes lua.h.
 */
#ifndef HB_YAMLCONF_H
#define HB_YAMLCONF_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    HB_YAML_NULL, HB_YAML_BOOL, HB_YAML_INT, HB_YAML_FLOAT, HB_YAML_STR, HB_YAML_SEQ, HB_YAML_MAP
} hb_yaml_kind_t;

/* One node. The tree owns all its memory; free the root with hb_yaml_free. */
typedef struct hb_yaml {
    hb_yaml_kind_t kind;
    int line, column;       /* where the node starts in the source, 1-based */
    /* scalars (NULL, BOOL, INT, FLOAT, STR): text is the scalar's text as written (after unquoting and
     * escapes), NUL-terminated; len excludes the NUL (a quoted "\0" can make strlen(text) < len) */
    char *text;
    size_t len;
    int boolean;            /* BOOL */
    int64_t integer;        /* INT */
    double number;          /* FLOAT */
    /* SEQ and MAP: n children in document order; for a MAP keys[i] is the key of items[i] */
    size_t n;
    struct hb_yaml **items;
    char **keys;
} hb_yaml_t;

/* Parse the YAML file at path (one document). An empty document gives a NULL node. Returns the root,
 * or NULL with "path:line:column: problem" (or "path: <strerror>" when it cannot be read). */
hb_yaml_t *hb_yaml_load_file(const char *path /* [IN] */, char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Parse len bytes of YAML text; name stands for the file in error messages (e.g. "--set train.lr"). */
hb_yaml_t *hb_yaml_load_string(const char *name /* [IN] */, const char *text /* [IN] (len) */, size_t len,
                               char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Frees y and all its children; NULL is fine. */
void hb_yaml_free(hb_yaml_t *y);

/* The value of key in mapping map, or NULL when map is NULL, not a mapping, or lacks the key. */
const hb_yaml_t *hb_yaml_get(const hb_yaml_t *map, const char *key);

/* Follows a dotted path of mapping keys ("train.lr") from root; NULL when any step is missing. */
const hb_yaml_t *hb_yaml_path(const hb_yaml_t *root, const char *dotted);

/* "null", "boolean", "integer", "float", "string", "sequence", "mapping" (a static string). */
const char *hb_yaml_kind_name(hb_yaml_kind_t kind);

#endif
