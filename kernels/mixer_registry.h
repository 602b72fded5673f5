/* mixer_registry.h — the token mixers hyblua knows: one descriptor (kernels/mixer.h) per kernel file pair.
 *
 * core/mixer_op.c turns each into a differentiable op, lua/lmixer.c into hb.<name>{...} and
 * hb.<name>_step{...}. Adding a mixer adds one line to kernels/mixer_registry.c.
 */
#ifndef HB_KERNELS_MIXER_REGISTRY_H
#define HB_KERNELS_MIXER_REGISTRY_H
#include "mixer.h"

/* Every registered descriptor, in registration order, ending with NULL. */
extern const hb_mixer_desc_t *const hb_mixer_registry[];
/* The descriptor called `name`, or NULL. */
const hb_mixer_desc_t *hb_mixer_find(const char *name);

#endif
