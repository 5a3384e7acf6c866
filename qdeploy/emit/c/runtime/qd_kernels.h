/* qdeploy C runtime: kernel parameters and entry points (NHWC int8, C99, no malloc,
 * no VLAs, no recursion, no floating point). Every integer a kernel reads was computed
 * once by qdeploy's quantizer; the generated model.c holds them as static const structs.
 * Each kernel follows the integer recipe of qdeploy's reference interpreter
 * (qdeploy/quant/interpreter.py), which follows the TFLite int8 reference kernels.
 * Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#ifndef QD_KERNELS_H
#define QD_KERNELS_H

#include <stdint.h>
#include "qd_fixedpoint.h"

/* Output stage: per output channel requantisation (Q31 multiplier + shift, or the fpga
 * rounding shift when multiplier is NULL), + zero point, clamp. */
typedef struct {
    const int32_t *multiplier;   /* [channels]; NULL in the fpga profile */
    const int32_t *shift;        /* [channels] */
    int32_t zp_out, act_min, act_max;
} qd_requant;

/* An n-dimensional walk (outermost first) over up to three buffers:
 * s[0] strides of the output, s[1], s[2] of the inputs (in elements; 0 = broadcast). */
typedef struct {
    int32_t ndim;
    int32_t dims[QD_MAX_DIMS];
    int32_t s[3][QD_MAX_DIMS];
} qd_walk;

typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_t, pad_l;
    int32_t groups, in_cg, out_cg;   /* groups; input and output channels per group */
    int32_t depth_multiplier;        /* depthwise: output channels per input channel */
    int32_t in_zp;
    const int8_t *weights;       /* conv OHWI [out_c][k_h][k_w][in_c/groups]; depthwise [k_h][k_w][out_c] */
    const int32_t *bias;         /* [out_c]; conv: bias - in_zp * sum of the channel's weights */
    qd_requant rq;
} qd_conv_params;

typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, groups, in_cg, out_cg;
    int32_t in_zp;
    const int32_t *ytab_start;   /* [out_h + 1]: taps of output row oy are ytab[start[oy]..start[oy+1]) */
    const int32_t *ytab;         /* pairs (ky, iy) */
    const int32_t *xtab_start;   /* [out_w + 1] */
    const int32_t *xtab;         /* pairs (kx, ix) */
    const int8_t *weights;       /* OHWI [out_c][k_h][k_w][in_c/groups] */
    const int32_t *bias;
    qd_requant rq;
} qd_tconv_params;

typedef struct {
    int32_t in_features, out_features, in_zp;
    const int8_t *weights;       /* [out_features][in_features] */
    const int32_t *bias;         /* bias - in_zp * sum of the row's weights */
    qd_requant rq;
} qd_fc_params;

/* Add / Sub / Mul. q31: TFLite's recipes (left_shift, three multipliers for Add/Sub; one
 * for Mul). fpga: a_shift, b_shift (left), out_shift (rounding). */
typedef struct {
    int32_t op;                  /* QD_ADD, QD_SUB, QD_MUL */
    int32_t zp1, zp2, zp_out, left_shift;
    int32_t multiplier1, shift1, multiplier2, shift2, multiplier_out, shift_out;
    int32_t a_shift, b_shift, out_shift;
    int32_t act_min, act_max;
    qd_walk walk;
} qd_eltwise_params;
#define QD_ADD 0
#define QD_SUB 1
#define QD_MUL 2
#define QD_MAX 3
#define QD_MIN 4

typedef struct {
    int32_t zp_in, zp_alpha, zp_out;
    int32_t multiplier_1, shift_1, multiplier_2, shift_2;   /* q31 */
    int32_t pos_shift, neg_shift;                           /* fpga */
    int32_t act_min, act_max;
    qd_walk walk;                 /* s[1] input, s[2] alpha */
} qd_prelu_params;

typedef struct {
    int32_t in_h, in_w, c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_t, pad_l;
    int32_t act_min, act_max;
    /* fpga average pool: multiplier/shift of each window count (counts ascending) */
    int32_t n_counts;
    const int32_t *counts, *multiplier, *shift;
} qd_pool_params;

typedef struct {
    int32_t hw, c;               /* reduce hw pixels of c channels */
    int32_t zp_in, zp_out, multiplier, shift;
    int32_t act_min, act_max;
} qd_mean_params;

typedef struct {
    int32_t n;
    int32_t zp_in, zp_out, multiplier, shift;   /* requantize */
    int32_t pos_shift, neg_multiplier, neg_shift;   /* leaky shift */
    int32_t act_min, act_max;
} qd_unary_params;

typedef struct {
    int32_t multiplier, left_shift, diff_min;
    int32_t len, stride;          /* elements per row and their stride */
    qd_walk rows;                 /* row starts: s[0] output, s[1] input */
} qd_softmax_params;

typedef struct {
    int32_t in_h, in_w, c, out_h, out_w;
    const int32_t *y;             /* per output row: y0, y1, fy (Q10) */
    const int32_t *x;             /* per output column: x0, x1, fx (Q10) */
} qd_resize_params;

/* The output stage of a convolution-like kernel for output channel o. */
static inline int8_t qd_output(int32_t acc, const qd_requant *rq, int32_t o)
{
#if QD_PROFILE_FPGA
    acc = qd_shift_round(acc, rq->shift[o]);
#else
    acc = qd_mbqm(acc, rq->multiplier[o], rq->shift[o]);
#endif
    acc = qd_clamp32(acc, -65536, 65536) + rq->zp_out;   /* the clamp below is within int8 */
    return (int8_t)qd_clamp32(acc, rq->act_min, rq->act_max);
}

/* Steps the outer counters of a walk (every dimension but the innermost) and the three
 * offsets; returns 0 when the walk is done. No division, no recursion. */
static inline int qd_walk_next(const qd_walk *w, int32_t idx[QD_MAX_DIMS], int32_t off[3])
{
    int32_t d;
    for (d = w->ndim - 2; d >= 0; --d) {
        off[0] += w->s[0][d];
        off[1] += w->s[1][d];
        off[2] += w->s[2][d];
        if (++idx[d] < w->dims[d]) return 1;
        off[0] -= w->s[0][d] * w->dims[d];
        off[1] -= w->s[1][d] * w->dims[d];
        off[2] -= w->s[2][d] * w->dims[d];
        idx[d] = 0;
    }
    return 0;
}

/* convolution family */
/* scratch: k_h * k_w * in_cg bytes of the arena (the receptive field of one output pixel) */
void qd_conv(const qd_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch);
void qd_depthwise(const qd_conv_params *p, const int8_t *in, int8_t *out);
void qd_transpose_conv(const qd_tconv_params *p, const int8_t *in, int8_t *out);
void qd_fully_connected(const qd_fc_params *p, const int8_t *in, int8_t *out);

/* element-wise */
void qd_eltwise(const qd_eltwise_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void qd_prelu(const qd_prelu_params *p, const int8_t *in, const int8_t *alpha, int8_t *out);
void qd_requantize(const qd_unary_params *p, const int8_t *in, int8_t *out);
void qd_leaky_shift(const qd_unary_params *p, const int8_t *in, int8_t *out);
void qd_lut(const int8_t *table, int32_t n, const int8_t *in, int8_t *out);
void qd_clamp(int32_t n, int32_t lo, int32_t hi, int8_t *buf);

/* pooling and reductions */
void qd_max_pool(const qd_pool_params *p, const int8_t *in, int8_t *out);
void qd_avg_pool(const qd_pool_params *p, const int8_t *in, int8_t *out);
void qd_mean(const qd_mean_params *p, const int8_t *in, int8_t *out);
#if !QD_PROFILE_FPGA
void qd_softmax(const qd_softmax_params *p, const int8_t *in, int8_t *out);
#endif

/* data movement (concat, split, slice, pad, reshape, transpose, depth/space, nearest resize) */
void qd_copy(const qd_walk *w, const int8_t *in, int8_t *out);
void qd_gather(int32_t n, const int32_t *index, const int8_t *in, int8_t *out);
void qd_fill(int32_t n, int8_t value, int8_t *out);
void qd_resize_bilinear(const qd_resize_params *p, const int8_t *in, int8_t *out);

#endif
