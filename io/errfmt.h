/* errfmt.h — internal to core/: formatting an error message into a caller's err/errlen buffer. */
#ifndef HB_ERRFMT_H
#define HB_ERRFMT_H
#include <stddef.h>

/* Writes a message into a caller's buffer; NULL/0-length buffers are ignored. */
void hb_errfmt(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
