/* safetensors.h — read and write Hugging Face safetensors files (single or sharded checkpoints).
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON header, then the data section.
 * The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
 * (byte range [b, e) of the data section, row-major, little-endian); an optional "__metadata__"
 * object maps strings to strings.
 *
 * Reading mmaps the file read-only and validates the whole header before returning a handle, so every
 * accessor below can trust what it returns: dtype is known, shape entries are >= 0, numel * dtype
 * size == nbytes without overflow, and [data, data + nbytes) lies inside the file. Overlapping or
 * unordered ranges and bytes after the last tensor are accepted (the Python library never writes
 * them, but they are harmless). Tensor data are NOT copied: data pointers stay valid until
 * hb_safetensors_close. Data are aligned to the dtype size whenever the header length and offsets are
 * multiples of it, which holds for files written by current Python safetensors and by
 * hb_safetensors_write, but NOT for every file in the wild (older writers sorted by name only: the
 * refs.safetensors fixtures of gated_deltanet* and stress/ hold input_ids at an offset that is 4 mod
 * 8). Check hb_safetensors_aligned and memcpy instead of casting when it says 0. If another process truncates the file while it
 * is mapped, touching the data raises SIGBUS (that is mmap's contract); hb_safetensors_write replaces
 * files by rename, so it never does that to a reader.
 *
 * Errors are values: failing calls return NULL / -1 and write one line into err (errlen bytes,
 * always NUL-terminated when errlen > 0; err may be NULL) naming the file, the tensor and the
 * problem, e.g. "model.safetensors: tensor 'model.norm.weight': data offsets [0, 516) exceed the
 * data section (512 bytes)". Nothing here prints, exits or aborts. A handle may be read from several
 * threads at once; opening files from several threads at once is safe apart from cJSON's global
 * error pointer, which failed parses overwrite (hyblua never reads it).
 */
#ifndef HB_SAFETENSORS_H
#define HB_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

/* The dtypes hyblua reads and writes (the safetensors spellings are "F64", "F32", ...). */
typedef enum {
    HB_ST_F64, HB_ST_F32, HB_ST_F16, HB_ST_BF16,
    HB_ST_I64, HB_ST_I32, HB_ST_I16, HB_ST_I8, HB_ST_U8, HB_ST_BOOL,
    HB_ST_NDTYPES
} hb_st_dtype;

#define HB_ST_MAX_DIMS 64            /* more dimensions than this is rejected as malformed */
#define HB_ST_MAX_HEADER 100000000   /* header size limit, the same as the Python library's */

/* Bytes per element (8, 4, 2, 1), or 0 for a value outside the enum. */
size_t hb_st_dtype_size(hb_st_dtype dt);
/* "F32" etc., or NULL for a value outside the enum. Static storage. */
const char *hb_st_dtype_name(hb_st_dtype dt);
/* The enum value for a safetensors spelling ("BF16"), or -1 if unknown or not supported. */
int hb_st_dtype_from_name(const char *name);

typedef struct hb_safetensors hb_safetensors_t;

/* Open and fully validate one file. Returns a handle to release with hb_safetensors_close, or NULL
 * with a message. path [IN]. */
hb_safetensors_t *hb_safetensors_open(const char *path, char *err, size_t errlen);

/* Open a sharded checkpoint through its index (model.safetensors.index.json: {"weight_map":
 * {tensor name: shard file name relative to the index's folder}, "metadata": {...}}).
 * dir_or_index is the index file, a folder, or a file ending in ".safetensors" (opened with
 * hb_safetensors_open); a folder is looked up for model.safetensors.index.json first and
 * model.safetensors second, so this one call opens any checkpoint layout.
 * Every shard is opened and validated; every name of the weight map must be in the shard it maps to,
 * and no name may be in two shards. The handle presents all tensors of all shards (shards in
 * name order, tensors in header order within each); its metadata is the union of the shards'
 * __metadata__ (first shard wins on a clash). The index's own "metadata" (total_size) is not kept. */
hb_safetensors_t *hb_safetensors_open_index(const char *dir_or_index, char *err, size_t errlen);

/* Unmap and free everything, including the strings and shapes returned below. NULL is a no-op. */
void hb_safetensors_close(hb_safetensors_t *st);

/* Number of tensors (>= 0). */
int hb_safetensors_count(const hb_safetensors_t *st);

/* Accessors for tensor i, 0 <= i < count, in header order (for files written by the Python library
 * or hb_safetensors_write: by dtype size, then name). An i out of range gives NULL / -1 / 0.
 * Returned pointers are owned by the handle. */
const char *hb_safetensors_name(const hb_safetensors_t *st, int i);
hb_st_dtype hb_safetensors_dtype(const hb_safetensors_t *st, int i);     /* -1 if i is out of range */
int hb_safetensors_ndim(const hb_safetensors_t *st, int i);               /* 0 for a scalar */
const int64_t *hb_safetensors_shape(const hb_safetensors_t *st, int i);   /* ndim entries; non-NULL */
int64_t hb_safetensors_numel(const hb_safetensors_t *st, int i);          /* product of shape; 1 for ndim 0 */
const void *hb_safetensors_data(const hb_safetensors_t *st, int i);       /* read-only mapping */
size_t hb_safetensors_nbytes(const hb_safetensors_t *st, int i);
const char *hb_safetensors_file(const hb_safetensors_t *st, int i);       /* path of the file holding it */
int hb_safetensors_aligned(const hb_safetensors_t *st, int i);            /* 1 if data % dtype size == 0 */

/* Index of the tensor called name, or -1. O(log count). */
int hb_safetensors_find(const hb_safetensors_t *st, const char *name);

/* __metadata__ entries, 0 <= i < meta_count, in header order; meta_get gives the value for key or
 * NULL. Strings are owned by the handle. */
int hb_safetensors_meta_count(const hb_safetensors_t *st);
const char *hb_safetensors_meta_key(const hb_safetensors_t *st, int i);
const char *hb_safetensors_meta_value(const hb_safetensors_t *st, int i);
const char *hb_safetensors_meta_get(const hb_safetensors_t *st, const char *key);

/* One tensor to write. All pointers are borrowed for the duration of the call. data holds
 * numel * dtype size bytes, row-major, little-endian; it may be NULL when that is 0. */
typedef struct {
    const char *name;
    hb_st_dtype dtype;
    int ndim;                /* 0 .. HB_ST_MAX_DIMS */
    const int64_t *shape;    /* ndim entries, each >= 0; may be NULL when ndim == 0 */
    const void *data;
} hb_st_entry;

/* Write n tensors and nmeta metadata pairs (nmeta == 0: no __metadata__ key) to path, in the
 * Python library's byte layout: compact JSON header starting with __metadata__ (keys sorted), then
 * the tensors ordered as Python orders them — by dtype I64, F64, F32, I32, BF16, F16, I16, I8, U8,
 * BOOL (the Rust enum, descending: larger elements first, so every tensor is aligned) and then by
 * name (bytewise) — which is also the order of the data; the header is padded with spaces to a
 * multiple of 8 bytes. A file
 * written by Python that is read and written back comes out byte-identical when it has at most one
 * metadata key. All arguments are checked before anything is created (names unique, non-NULL and not
 * "__metadata__", dtype known, shapes >= 0 without overflow, data non-NULL). The file is replaced
 * atomically (temporary file, fsync, rename, fsync of the folder; see hb_atomic_open in
 * jsonfile.h), so data may point into a handle open on the same path. Returns 0 or -1 with a
 * message; on failure path is untouched. */
int hb_safetensors_write(const char *path, int n, const hb_st_entry *entries,
                         int nmeta, const char **meta_keys, const char **meta_vals,
                         char *err, size_t errlen);

#endif
