/* mixer.h — how a token-mixer kernel file describes itself to the layers above it (plain C, no tensors).
 *
 * A mixer is one kernel file pair, kernels/<name>.{c,h}. Besides its kernels (written out as _f32/_f64
 * functions, see kreal.h) the .c file ends with a descriptor, `const hb_mixer_desc_t hb_mixer_<name>`,
 * listed in kernels/mixer_registry.c. From the descriptor alone core/mixer_op.c makes the mixer a
 * differentiable tensor op (shape checks from the patterns, contiguity, dtype dispatch, an autograd node,
 * the backward) and lua/lmixer.c makes it `hb.<name>{...}` and `hb.<name>_step{...}`.
 *
 * Shape patterns are dimension names separated by single spaces, e.g. "B T H K": every name must be one
 * of the descriptor's `dims`. An input's pattern is its full-sequence shape; the decode step takes the
 * same pattern without "T" (q (B,T,H,K) → (B,H,K)). The op binds each name to a size from the first
 * input (in descriptor order; for the step, the state first) that has it, and checks every other
 * input against it: "gla: k has shape [1, 5, 2, 8], expected [1, 4, 2, 8]".
 *
 * The kernels are called through five entry points per dtype over one argument block (hb_mixer_args_t),
 * written in the kernel file as thin adapters to its own functions. What a mixer can express: up to
 * HB_MIXER_MAXIN named tensor inputs (optional ones, ones without a gradient, constants of any float
 * dtype), grouped heads (`multiple`: value heads a multiple of q/k heads, SSD's G groups dividing H),
 * scalar parameters with defaults (fla's scale = K^-1/2), a saved buffer from the chunked forward to its
 * backward (the delta rule's chunk states), a backward that reads the forward output (HGRN), and packed
 * sequences (fla's cu_seqlens, kernels/seqs.h).
 *
 * Packed sequences. A descriptor with `packed = 1` declares that its four full-sequence entry points
 * honour args.cu_seqlens / args.N: with cu_seqlens != NULL the op has checked that B == 1 and that
 * 0 = cu[0] ≤ ... ≤ cu[N] = T; the (1,T,...) inputs hold N documents back to back, the final state
 * args.ht has the state pattern with B replaced by N, and nothing may cross a document boundary. The
 * adapters pass the two fields straight to the kernels (`..., a->cu_seqlens, a->N, B, T, ...`), and
 * saved_numel counts what the chunked forward saves for that layout (e.g. Σ_n ceil(len_n / C) chunk
 * states). A descriptor without it is refused a cu_seqlens by the op ("<name>: packed sequences
 * (cu_seqlens) are not supported by this mixer's kernels"). The decode step never sees cu_seqlens.
 */
#ifndef HB_KERNELS_MIXER_H
#define HB_KERNELS_MIXER_H
#include <stdint.h>

#define HB_MIXER_MAXIN 8     /* tensor inputs */
#define HB_MIXER_MAXSCALAR 4 /* scalar parameters */
#define HB_MIXER_MAXDIM 8    /* dimension names */

/* Input flags. */
enum {
    HB_IN_OPTIONAL = 1, /* may be absent (nil / NULL): the kernel gets NULL (delta rule's g) */
    HB_IN_GRAD = 2,     /* the backward computes its gradient; without it the input is a constant and
                           passing one that requires grad is an error */
    HB_IN_CAST = 4,     /* any float dtype, converted to the compute dtype (retention's float64 decay) */
    HB_IN_UNSAVED = 8   /* the backward does not read it: not kept alive for it (HGRN's x) */
};

typedef struct {
    const char *name;  /* keyword in hb.<mixer>{...} and in error messages: "q", "beta", "decay" */
    const char *shape; /* full-sequence pattern, e.g. "B T H K" */
    unsigned flags;    /* HB_IN_* */
} hb_mixer_input_t;

typedef struct {
    const char *name;      /* keyword: "scale" */
    double def;            /* default value, unless rsqrt_of is set */
    const char *rsqrt_of;  /* default = size^(-1/2) of this dimension (fla's scale = K^-1/2), or NULL */
} hb_mixer_scalar_t;

/* "dim is a multiple of of" (both dimension names), e.g. {"HV", "H"}: grouped value heads. */
typedef struct {
    const char *dim, *of;
} hb_mixer_multiple_t;

/* The argument block of every entry point. Pointers are to contiguous row-major data of the entry's
 * type (float for _f32, double for _f64); shapes are the descriptor's patterns. */
typedef struct {
    /* forward and step */
    void *o;                         /* [OUT] the output, pattern `out` (the step's: `out` without T) */
    void *ht;                        /* [OUT][OPTIONAL] forward: the final state, pattern `state` */
    void *state;                     /* [IN/OUT] step: the decode state, pattern `state`, updated in place */
    const void *in[HB_MIXER_MAXIN];  /* [IN] inputs in descriptor order; NULL for an absent optional one
                                        (and, in the backward, for an HB_IN_UNSAVED one) */
    void *saved;                     /* chunked forward: [OUT][OPTIONAL] saved_numel elements for the
                                        backward (NULL when no backward will run); chunked backward: [IN]
                                        what that forward wrote, or NULL (then recompute) */
    /* backward */
    const void *dout;                /* [IN] dL/do, pattern `out` */
    const void *out;                 /* [IN] the forward output (only when saves_output) */
    void *din[HB_MIXER_MAXIN];       /* [OUT] += dL/d in[i] for HB_IN_GRAD inputs (zeroed by the caller);
                                        NULL for inputs without a gradient or absent */
    /* parameters */
    double scalar[HB_MIXER_MAXSCALAR]; /* in descriptor order, defaults filled in */
    int64_t dim[HB_MIXER_MAXDIM];      /* sizes in the order of `dims` (T = 1 in the step) */
    int64_t chunk;                     /* chunk length of the chunked forms (the descriptor's default
                                          unless the caller chose one) */
    /* packed sequences (full-sequence entry points only; see the top comment) */
    const int64_t *cu_seqlens;         /* [IN][OPTIONAL] (N+1) document starts (kernels/seqs.h), or NULL */
    int64_t N;                         /* number of documents when cu_seqlens != NULL (ignored otherwise) */
} hb_mixer_args_t;

/* An entry point: returns 0, or -1 on a bad argument or when scratch memory could not be allocated. */
typedef int (*hb_mixer_fn)(const hb_mixer_args_t *a);

typedef struct {
    hb_mixer_fn fwd_chunk, bwd_chunk;         /* mode "chunk": the chunked training form */
    hb_mixer_fn fwd_recurrent, bwd_recurrent; /* mode "recurrent": the naive reference and its BPTT */
    hb_mixer_fn step;                         /* one decode step */
} hb_mixer_kernels_t;

typedef struct {
    const char *name;                          /* "gla": hb.gla, hb.gla_step, error messages */
    const char *dims;                          /* dimension names in args.dim order: "B T H K V" */
    hb_mixer_input_t in[HB_MIXER_MAXIN];       /* inputs, in order; the list ends at the first name NULL */
    hb_mixer_scalar_t scalar[HB_MIXER_MAXSCALAR]; /* scalar parameters; ends at the first name NULL */
    const char *out;                           /* output pattern: "B T H V" */
    const char *state;                         /* recurrent state pattern: "B H K V" */
    hb_mixer_multiple_t multiple[2];           /* divisibility constraints; end at the first dim NULL */
    int64_t chunk;                             /* default chunk length; 0: the mixer takes no chunk
                                                  argument (it picks its own, as HGRN does) */
    int saves_output;                          /* the backward reads the forward output (args.out) */
    int packed;                                /* the full-sequence entry points honour args.cu_seqlens */
    /* Elements of the buffer the chunked forward saves for the chunked backward (args.dim, args.chunk,
     * args.cu_seqlens and args.N filled in), or NULL when it saves nothing. */
    int64_t (*saved_numel)(const hb_mixer_args_t *a);
    hb_mixer_kernels_t f32, f64;               /* the entry points for float and for double */
} hb_mixer_desc_t;

#endif
