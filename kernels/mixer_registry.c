/* mixer_registry.c — the list of token mixers (see mixer_registry.h): one line per mixer, naming the
 * descriptor defined at the end of kernels/<name>.c. Order = the order hb.<name> functions are listed. */
#include "mixer_registry.h"
#include <string.h>

extern const hb_mixer_desc_t hb_mixer_hgrn, hb_mixer_retention, hb_mixer_gla, hb_mixer_delta_rule,
    hb_mixer_kda;

const hb_mixer_desc_t *const hb_mixer_registry[] = {
    &hb_mixer_hgrn,       /* kernels/hgrn.c: HGRN's element-wise gated scan */
    &hb_mixer_retention,  /* kernels/retention.c: RetNet, constant per-head decay */
    &hb_mixer_gla,        /* kernels/gla.c: GLA / HGRN-2, per-key-channel decay */
    &hb_mixer_delta_rule, /* kernels/delta_rule.c: DeltaNet / Gated DeltaNet */
    &hb_mixer_kda,        /* kernels/kda.c: KDA, the delta rule with a per-key-channel decay */
    NULL,
};

const hb_mixer_desc_t *hb_mixer_find(const char *name) {
    for (int i = 0; hb_mixer_registry[i]; i++)
        if (!strcmp(hb_mixer_registry[i]->name, name)) return hb_mixer_registry[i];
    return NULL;
}
