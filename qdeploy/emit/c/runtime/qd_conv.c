/* qdeploy C runtime: convolution, depthwise convolution, transposed convolution and fully
 * connected layers (NHWC int8). acc = bias + sum (x - zp_x) * w over the valid (unpadded)
 * taps, then the output stage (qd_output). The sums are exact int32, as in TFLite.
 * Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#include "qd_kernels.h"

/* sum over n of (x[i] - zp) * w[i] */
static inline int32_t qd_dot_zp(const int8_t *x, const int8_t *w, int32_t n, int32_t zp)
{
    int32_t dot = 0, wsum = 0, i;
    for (i = 0; i < n; ++i) {
        dot += (int32_t)x[i] * (int32_t)w[i];
        wsum += w[i];
    }
    return dot - zp * wsum;
}

#define QD_BLOCK 16   /* fixed-length inner loops: compilers vectorize them even at -O2 */

static inline int32_t qd_dot(const int8_t *x, const int8_t *w, int32_t n)
{
    int32_t dot = 0, i = 0, j;
    for (; i + QD_BLOCK <= n; i += QD_BLOCK) {
        for (j = 0; j < QD_BLOCK; ++j) dot += (int32_t)x[i + j] * (int32_t)w[i + j];
    }
    for (; i < n; ++i) dot += (int32_t)x[i] * (int32_t)w[i];
    return dot;
}

/* four dot products with the weight rows w, w + stride, ... sharing the input loads */
static inline void qd_dot4(const int8_t *x, const int8_t *w, int32_t stride, int32_t n, int32_t acc[4])
{
    int32_t d0 = 0, d1 = 0, d2 = 0, d3 = 0, i = 0, j;
    const int8_t *w0 = w, *w1 = w + stride, *w2 = w + 2 * stride, *w3 = w + 3 * stride;
    for (; i + QD_BLOCK <= n; i += QD_BLOCK) {
        for (j = 0; j < QD_BLOCK; ++j) {
            const int32_t xv = x[i + j];
            d0 += xv * w0[i + j];
            d1 += xv * w1[i + j];
            d2 += xv * w2[i + j];
            d3 += xv * w3[i + j];
        }
    }
    for (; i < n; ++i) {
        const int32_t xv = x[i];
        d0 += xv * w0[i];
        d1 += xv * w1[i];
        d2 += xv * w2[i];
        d3 += xv * w3[i];
    }
    acc[0] += d0;
    acc[1] += d1;
    acc[2] += d2;
    acc[3] += d3;
}

/* a + b modulo 2**32: the folded bias may leave int32 where the accumulator does not */
static inline int32_t qd_add_wrap(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* Output channels o0 <= o < o1 of one output pixel from its receptive field `patch`
 * (k_h * k_w * in_cg bytes, OHWI order: the weights rows are contiguous). */
static void qd_conv_pixel(const qd_conv_params *p, const int8_t *patch, int32_t k, int32_t o0, int32_t o1,
                          int8_t *y)
{
    int32_t o = o0, j;
    for (; o + 4 <= o1; o += 4) {
        int32_t acc[4] = {0, 0, 0, 0};
        qd_dot4(patch, p->weights + o * k, k, k, acc);
        for (j = 0; j < 4; ++j) y[o + j] = qd_output(qd_add_wrap(acc[j], p->bias[o + j]), &p->rq, o + j);
    }
    for (; o < o1; ++o) y[o] = qd_output(qd_add_wrap(qd_dot(patch, p->weights + o * k, k), p->bias[o]), &p->rq, o);
}

/* The bias holds bias - zp_x * sum(w) (folded by the emitter, modulo 2**32), so padded taps read zp_x:
 * (x - zp_x) * w summed over the window == bias' + sum x * w over the patch. */
void qd_conv(const qd_conv_params *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    const int32_t cg = p->in_cg, og = p->out_cg;
    const int32_t k = p->k_h * p->k_w * cg;   /* weights per output channel */
    int32_t oy, ox, g, ky, kx, c;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *y = out + (oy * p->out_w + ox) * p->out_c;
            for (g = 0; g < p->groups; ++g) {
                const int8_t *patch;
                if (p->k_h == 1 && p->k_w == 1 && iy0 >= 0 && iy0 < p->in_h && ix0 >= 0 && ix0 < p->in_w) {
                    patch = in + (iy0 * p->in_w + ix0) * p->in_c + g * cg;
                } else {
                    int8_t *d = scratch;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        for (kx = 0; kx < p->k_w; ++kx, d += cg) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                                for (c = 0; c < cg; ++c) d[c] = (int8_t)p->in_zp;
                            } else {
                                const int8_t *x = in + (iy * p->in_w + ix) * p->in_c + g * cg;
                                for (c = 0; c < cg; ++c) d[c] = x[c];
                            }
                        }
                    }
                    patch = scratch;
                }
                qd_conv_pixel(p, patch, k, g * og, (g + 1) * og, y);
            }
        }
    }
}

#define QD_DW_CHUNK 64

void qd_depthwise(const qd_conv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t m = p->depth_multiplier, zp = p->in_zp;
    int32_t oy, ox, ky, kx, i;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *y = out + (oy * p->out_w + ox) * p->out_c;
            int32_t o0;
            for (o0 = 0; o0 < p->out_c; o0 += QD_DW_CHUNK) {
                int32_t acc[QD_DW_CHUNK];
                const int32_t n = p->out_c - o0 < QD_DW_CHUNK ? p->out_c - o0 : QD_DW_CHUNK;
                for (i = 0; i < n; ++i) acc[i] = p->bias[o0 + i];
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        const int8_t *x, *w;
                        if (ix < 0 || ix >= p->in_w) continue;
                        x = in + (iy * p->in_w + ix) * p->in_c;
                        w = p->weights + (ky * p->k_w + kx) * p->out_c + o0;
                        if (m == 1 && n == QD_DW_CHUNK) {   /* fixed length: vectorized at -O2 */
                            const int8_t *xo = x + o0;
                            for (i = 0; i < QD_DW_CHUNK; ++i) acc[i] += ((int32_t)xo[i] - zp) * w[i];
                        } else if (m == 1) {
                            const int8_t *xo = x + o0;
                            for (i = 0; i < n; ++i) acc[i] += ((int32_t)xo[i] - zp) * w[i];
                        } else {
                            /* output channel o0 + i reads input channel (o0 + i) / m */
                            int32_t c = 0, j = 0, skip;
                            for (skip = 0; skip < o0; ++skip) {
                                if (++j == m) { j = 0; ++c; }
                            }
                            for (i = 0; i < n; ++i) {
                                acc[i] += ((int32_t)x[c] - zp) * w[i];
                                if (++j == m) { j = 0; ++c; }
                            }
                        }
                    }
                }
                for (i = 0; i < n; ++i) y[o0 + i] = qd_output(acc[i], &p->rq, o0 + i);
            }
        }
    }
}

void qd_transpose_conv(const qd_tconv_params *p, const int8_t *in, int8_t *out)
{
    const int32_t cg = p->in_cg, og = p->out_cg;
    const int32_t wstride = p->k_h * p->k_w * cg;
    int32_t oy, ox, g, o, t, u;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            int8_t *y = out + (oy * p->out_w + ox) * p->out_c;
            for (g = 0; g < p->groups; ++g) {
                for (o = g * og; o < (g + 1) * og; ++o) {
                    int32_t acc = p->bias[o];
                    const int8_t *wo = p->weights + o * wstride;
                    for (t = p->ytab_start[oy]; t < p->ytab_start[oy + 1]; ++t) {
                        const int32_t ky = p->ytab[2 * t], iy = p->ytab[2 * t + 1];
                        for (u = p->xtab_start[ox]; u < p->xtab_start[ox + 1]; ++u) {
                            const int32_t kx = p->xtab[2 * u], ix = p->xtab[2 * u + 1];
                            acc += qd_dot_zp(in + (iy * p->in_w + ix) * p->in_c + g * cg,
                                             wo + (ky * p->k_w + kx) * cg, cg, p->in_zp);
                        }
                    }
                    y[o] = qd_output(acc, &p->rq, o);
                }
            }
        }
    }
}

/* The bias holds bias - zp_x * sum(w) (folded by the emitter). */
void qd_fully_connected(const qd_fc_params *p, const int8_t *in, int8_t *out)
{
    const int32_t k = p->in_features;
    int32_t o = 0, i;
    for (; o + 4 <= p->out_features; o += 4) {
        int32_t acc[4] = {0, 0, 0, 0};
        qd_dot4(in, p->weights + o * k, k, k, acc);
        for (i = 0; i < 4; ++i) out[o + i] = qd_output(qd_add_wrap(acc[i], p->bias[o + i]), &p->rq, o + i);
    }
    for (; o < p->out_features; ++o)
        out[o] = qd_output(qd_add_wrap(qd_dot(in, p->weights + o * k, k), p->bias[o]), &p->rq, o);
}
