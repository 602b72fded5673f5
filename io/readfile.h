/* readfile.h — opening and reading untrusted files without ever blocking or reading without bound.
 *
 * A named pipe (FIFO), a socket or a device put in place of a checkpoint, a token shard or a config
 * must fail at once: open(2) of a FIFO blocks until a writer appears, and reading /dev/zero never
 * ends. hb_open_regular opens with O_NONBLOCK (which makes open return at once for any file type),
 * refuses anything but a regular file, then restores blocking reads; hb_read_file reads such a file
 * whole, refusing one larger than a limit the caller sets. Errors are values: -1 / NULL and a message
 * naming the path in err (errlen bytes; err may be NULL).
 */
#ifndef HB_READFILE_H
#define HB_READFILE_H
#include <stddef.h>
#include <sys/stat.h>

/* Limits for whole-file reads: JSON (config.json, tokenizer.json, index and meta files, trainer
 * state) and tokenizer vocabularies; YAML configs. */
#define HB_READ_MAX_JSON ((size_t)1 << 30)
#define HB_READ_MAX_YAML ((size_t)64 << 20)

/* Open path for reading (O_CLOEXEC, blocking reads) if it is a regular file (symbolic links are
 * followed). Returns the descriptor and fills *sb (may be NULL); or -1 when open(2) failed (errno is
 * open's; message "path: cannot open: <reason>") or -2 when path is not a regular file (message
 * "path: not a regular file (a named pipe)", "(a directory)", ...; nothing was read from it). */
int hb_open_regular(const char *path /* [IN] */, struct stat *sb /* [OUT] [OPTIONAL] */, char *err, size_t errlen);

/* The whole regular file at path in a NUL-terminated buffer from hb_malloc (caller frees; *len = its
 * length without the NUL). A file of more than max bytes is refused before it is read ("path: file is
 * N bytes, more than the limit of M"), and so is one that grows past max while being read. NULL with
 * a message on any failure (cannot open, not a regular file, read error, out of memory). */
char *hb_read_file(const char *path /* [IN] */, size_t max, size_t *len /* [OUT] */, char *err, size_t errlen);

/* The same from fd, a descriptor hb_open_regular returned for path (sb: its stat), which this closes. */
char *hb_read_fd(int fd, const char *path /* [IN] */, const struct stat *sb /* [IN] */, size_t max,
                 size_t *len /* [OUT] */, char *err, size_t errlen);

#endif
