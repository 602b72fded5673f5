/* jsonfile.c — JSON files in and out, and atomic file replacement (see jsonfile.h).
 *
 * Reading slurps the file and parses it with cJSON_ParseWithLengthOpts; on failure cJSON reports the
 * position where it gave up (the same pointer cJSON_GetErrorPtr would return, but without the global
 * state), which is turned into line/column/byte for the message. Writing renders with cJSON_Print
 * and replaces the file by write-to-temporary + fsync + rename + fsync(directory).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "jsonfile.h"
#include "../kernels/alloc.h"
#include "errfmt.h"
#include "readfile.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

long hb_json_find_nul(const char *text, size_t len) {
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\0') return (long)i;
        if (c == '"') in_str = !in_str;
        else if (c == '\\' && in_str && i + 1 < len) {
            if (text[i + 1] == 'u' && i + 5 < len && !strncmp(text + i + 2, "0000", 4)) return (long)i;
            i++;                                   /* the escaped character: \" does not end the string */
        }
    }
    return -1;
}

cJSON *hb_json_read_file(const char *path, char *err, size_t errlen) {
    if (!path) { hb_errfmt(err, errlen, "hb_json_read_file: path is NULL"); return NULL; }
    size_t len = 0;
    char *buf = hb_read_file(path, HB_READ_MAX_JSON, &len, err, errlen);   /* no FIFO, no device, bounded */
    if (!buf) return NULL;
    const char *end = NULL;
    cJSON *j = len ? cJSON_ParseWithLengthOpts(buf, len, &end, 0) : NULL;
    size_t pos = 0;
    if (j) {                                   /* only whitespace may follow the value */
        pos = (size_t)(end - buf);
        while (pos < len && buf[pos] && strchr(" \t\r\n", buf[pos])) pos++;
        if (pos < len) { cJSON_Delete(j); j = NULL; }
    } else if (end && end >= buf && end <= buf + len) {
        pos = (size_t)(end - buf);
    }
    long nul = j ? hb_json_find_nul(buf, len) : -1;
    if (nul >= 0) {                            /* cJSON's strings end at a NUL: a name or token would be cut */
        size_t line = 1, col = 1;
        for (long i = 0; i < nul; i++) {
            if (buf[i] == '\n') { line++; col = 1; } else col++;
        }
        hb_errfmt(err, errlen, "%s: a string holds a NUL character (\\u0000) at line %zu, column %zu; names, tokens "
                  "and values cannot contain NUL", path, line, col);
        cJSON_Delete(j);
        free(buf);
        return NULL;
    }
    if (!j) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < pos; i++) {
            if (buf[i] == '\n') { line++; col = 1; } else col++;
        }
        if (len == 0) hb_errfmt(err, errlen, "%s: invalid JSON: the file is empty", path);
        else hb_errfmt(err, errlen, "%s: invalid JSON at line %zu, column %zu (byte %zu of %zu)",
                       path, line, col, pos, len);
    }
    free(buf);
    return j;
}

/* Find a non-finite number in j or below it; name its key in where. */
static int find_nonfinite(const cJSON *j, char *where, size_t wlen) {
    if (cJSON_IsNumber(j) && !isfinite(j->valuedouble)) {
        snprintf(where, wlen, "%s", j->string ? j->string : "(array element or top level)");
        return 1;
    }
    for (const cJSON *c = j->child; c; c = c->next)
        if (find_nonfinite(c, where, wlen)) return 1;
    return 0;
}

int hb_json_write_file(const char *path, const cJSON *j, char *err, size_t errlen) {
    if (!path || !j) { hb_errfmt(err, errlen, "hb_json_write_file: path or tree is NULL"); return -1; }
    char where[256];
    if (find_nonfinite(j, where, sizeof where)) {
        hb_errfmt(err, errlen, "%s: value of '%s' is not finite (NaN or inf cannot be written as JSON)",
                  path, where);
        return -1;
    }
    char *text = cJSON_Print(j);
    if (!text) { hb_errfmt(err, errlen, "%s: out of memory rendering JSON", path); return -1; }
    char *tmp = NULL;
    FILE *f = hb_atomic_open(path, &tmp, err, errlen);
    if (!f) { free(text); return -1; }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    int e = errno;
    free(text);
    if (!ok) {
        hb_atomic_abort(f, tmp);
        hb_errfmt(err, errlen, "%s: write failed: %s", path, strerror(e));
        return -1;
    }
    return hb_atomic_commit(f, tmp, path, err, errlen);
}

FILE *hb_atomic_open(const char *path, char **tmp, char *err, size_t errlen) {
    *tmp = NULL;
    size_t n = strlen(path) + 32;
    char *t = hb_malloc(n);
    if (!t) { hb_errfmt(err, errlen, "%s: out of memory", path); return NULL; }
    snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        hb_errfmt(err, errlen, "%s: cannot create temporary file '%s': %s", path, t, strerror(errno));
        if (fd >= 0) { close(fd); unlink(t); }
        free(t);
        return NULL;
    }
    *tmp = t;
    return f;
}

void hb_atomic_abort(FILE *f, char *tmp) {
    if (f) fclose(f);
    if (tmp) { unlink(tmp); free(tmp); }
}

/* fsync the directory holding path so the rename itself is durable. */
static int fsync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) dir = hb_strdup(".");
    else if (slash == path) dir = hb_strdup("/");
    else dir = hb_strndup(path, (size_t)(slash - path));
    if (!dir) { errno = ENOMEM; return -1; }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    if (rc != 0 && (errno == EINVAL || errno == EROFS)) rc = 0;   /* fs without directory fsync */
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The write-failure hook (see jsonfile.h): bytes the atomic writes of this process may still commit,
 * or -1 for no limit. */
static atomic_llong write_budget = -1;

void hb_io_fail_after_bytes(int64_t n) { atomic_store(&write_budget, n < 0 ? -1 : n); }

__attribute__((constructor)) static void write_budget_from_env(void) {
    const char *s = getenv("HB_FAIL_WRITE");
    if (s && *s) {
        char *end;
        long long n = strtoll(s, &end, 10);
        if (*end == '\0' && n >= 0) atomic_store(&write_budget, n);
    }
}

/* Take the flushed file's size from the budget; when it does not fit, cut the file to what did fit
 * (a partial write, as a full disk leaves it), empty the budget and fail with ENOSPC. */
static int charge_budget(FILE *f) {
    long long left = atomic_load(&write_budget);
    if (left < 0) return 0;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) return -1;
    if ((long long)sb.st_size <= left) {
        atomic_fetch_sub(&write_budget, (long long)sb.st_size);
        return 0;
    }
    if (ftruncate(fileno(f), (off_t)left) != 0) return -1;
    atomic_store(&write_budget, 0);
    errno = ENOSPC;
    return -1;
}

int hb_atomic_commit(FILE *f, char *tmp, const char *path, char *err, size_t errlen) {
    const char *step = NULL;
    if (ferror(f)) { step = "write"; errno = EIO; }
    else if (fflush(f) != 0 || charge_budget(f) != 0) step = "write";
    else if (fsync(fileno(f)) != 0) step = "fsync";
    if (step) {
        int e = errno;
        hb_atomic_abort(f, tmp);
        hb_errfmt(err, errlen, "%s: %s failed: %s", path, step, strerror(e));
        return -1;
    }
    if (fclose(f) != 0) {
        int e = errno;
        hb_atomic_abort(NULL, tmp);
        hb_errfmt(err, errlen, "%s: close failed: %s", path, strerror(e));
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        hb_errfmt(err, errlen, "%s: cannot rename '%s' over it: %s", path, tmp, strerror(e));
        hb_atomic_abort(NULL, tmp);
        return -1;
    }
    free(tmp);
    if (fsync_dir(path) != 0) {
        hb_errfmt(err, errlen, "%s: written, but fsync of its directory failed: %s", path,
                  strerror(errno));
        return -1;
    }
    return 0;
}
