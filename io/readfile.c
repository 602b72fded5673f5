/* readfile.c — hb_open_regular and hb_read_file (see readfile.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "readfile.h"
#include "../kernels/alloc.h"
#include "errfmt.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a named pipe";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a file";
}

int hb_open_regular(const char *path, struct stat *sb, char *err, size_t errlen) {
    struct stat local;
    if (!sb) sb = &local;
    if (!path) { hb_errfmt(err, errlen, "hb_open_regular: path is NULL"); errno = EINVAL; return -1; }
    /* O_NONBLOCK: open(2) of a FIFO without a writer returns at once instead of waiting for one */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        hb_errfmt(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, sb) != 0) {
        int e = errno;
        hb_errfmt(err, errlen, "%s: cannot stat: %s", path, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(sb->st_mode)) {
        hb_errfmt(err, errlen, "%s: not a regular file (%s)", path, kind(sb->st_mode));
        close(fd);
        return -2;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

char *hb_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    struct stat sb;
    int fd = hb_open_regular(path, &sb, err, errlen);
    if (fd < 0) return NULL;
    return hb_read_fd(fd, path, &sb, max, len, err, errlen);
}

char *hb_read_fd(int fd, const char *path, const struct stat *sb, size_t max, size_t *len, char *err, size_t errlen) {
    if ((uint64_t)sb->st_size > (uint64_t)max) {
        hb_errfmt(err, errlen, "%s: file is %lld bytes, more than the limit of %zu", path, (long long)sb->st_size, max);
        close(fd);
        return NULL;
    }
    /* the size is a hint (files in /proc say 0, a file may grow): read to the end, never past max */
    size_t cap = (size_t)sb->st_size + 1, n = 0;
    if (cap < 4096) cap = 4096;
    char *buf = hb_malloc(cap);
    if (!buf) { hb_errfmt(err, errlen, "%s: out of memory reading the file", path); close(fd); return NULL; }
    for (;;) {
        if (n + 1 >= cap) {
            if (n >= max) {
                hb_errfmt(err, errlen, "%s: file grew past the limit of %zu bytes while being read", path, max);
                goto fail;
            }
            size_t nc = cap > max / 2 ? max + 2 : cap * 2;
            char *nb = hb_realloc(buf, nc);
            if (!nb) { hb_errfmt(err, errlen, "%s: out of memory reading the file", path); goto fail; }
            buf = nb;
            cap = nc;
        }
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { hb_errfmt(err, errlen, "%s: cannot read: %s", path, strerror(errno)); goto fail; }
        if (got == 0) break;
        n += (size_t)got;
        if (n > max) {
            hb_errfmt(err, errlen, "%s: file grew past the limit of %zu bytes while being read", path, max);
            goto fail;
        }
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}
