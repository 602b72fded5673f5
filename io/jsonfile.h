/* jsonfile.h — whole-file JSON I/O (config.json, model.safetensors.index.json) and the atomic
 * file-replacement protocol that every hyblua writer uses (also hb_safetensors_write).
 *
 * Errors are values: on failure the functions return NULL / -1 and write a one-line message naming
 * the file into err (errlen bytes, always NUL-terminated when errlen > 0; err may be NULL).
 */
#ifndef HB_JSONFILE_H
#define HB_JSONFILE_H
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <cjson/cJSON.h>

/* Parse the file at path. Returns a tree the caller frees with cJSON_Delete, or NULL with a message
 * such as "config.json: invalid JSON at line 3, column 14 (byte 41 of 80)" (the position is
 * where cJSON gave up: at or shortly after the mistake). Only whitespace may follow
 * the top-level value. */
cJSON *hb_json_read_file(const char *path, char *err, size_t errlen);
/* hb_json_read_file refuses a file whose strings hold NUL (\u0000 or a raw 0 byte): cJSON's strings are
 * C strings, so a name or token would be cut short silently. This finds the first one in valid JSON
 * text: its byte offset, or -1. */
long hb_json_find_nul(const char *text /* [IN] (len) */, size_t len);

/* Write j pretty-printed (cJSON_Print layout plus a final newline) to path atomically (see
 * hb_atomic_open). Non-finite numbers, which JSON cannot hold, are an error naming the key. Returns 0,
 * or -1 with a message, in which case path is untouched. j is not modified. */
int hb_json_write_file(const char *path, const cJSON *j, char *err, size_t errlen);

/* Atomic replacement of a file, in three calls:
 *   f = hb_atomic_open(path, &tmp, err, errlen);   creates "<path>.tmp.<pid>" for writing
 *   ... fwrite(..., f) ...                           (on a failed write: hb_atomic_abort(f, tmp))
 *   hb_atomic_commit(f, tmp, path, err, errlen);    fflush, fsync, fclose, rename over path, fsync dir
 * Readers of path see the old contents or the new ones, never a mix, even after a crash; mappings of
 * the old file (hb_safetensors_open) stay valid. hb_atomic_open returns NULL with a message on
 * failure and otherwise sets *tmp to a malloc'ed temporary name. hb_atomic_commit and hb_atomic_abort
 * always consume f and tmp (close, free, and on any failure remove the temporary file); commit
 * returns 0 or -1 with a message. Two threads of one process must not write the same path at once. */
FILE *hb_atomic_open(const char *path, char **tmp, char *err, size_t errlen);
int hb_atomic_commit(FILE *f, char *tmp, const char *path, char *err, size_t errlen);
void hb_atomic_abort(FILE *f, char *tmp);

/* Test hook, a disk that fills up: from now on the atomic writes of this process (everything written
 * through hb_atomic_commit: safetensors, JSON, token shards, saved configs) may commit n bytes in all;
 * the commit that would go past the limit leaves a cut-off temporary file and fails with "path: write
 * failed: No space left on device" (ENOSPC), and so does every later one. n = -1 removes the limit.
 * The environment variable HB_FAIL_WRITE=N sets the limit at start (for tests that drive hyblua). */
void hb_io_fail_after_bytes(int64_t n);

#endif
