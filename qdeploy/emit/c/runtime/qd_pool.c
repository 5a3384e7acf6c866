/* qdeploy C runtime: max pool, average pool and the spatial mean (NHWC int8).
 * Max pool: padding never wins. Average pool (q31): TFLite's rounded integer mean over the
 * valid part of the window (reference_integer_ops::AveragePool); fpga: the 7-bit
 * multiplier and rounding shift of the window's count. Mean (q31): TFLite's
 * QuantizedMeanOrSum with 1/count folded into the multiplier; fpga: multiplier + shift.
 * Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#include "qd_kernels.h"

void qd_max_pool(const qd_pool_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, ky, kx, c;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *y = out + (oy * p->out_w + ox) * p->c;
            int32_t any = 0;
            for (ky = 0; ky < p->k_h; ++ky) {
                const int32_t iy = iy0 + ky * p->dil_h;
                if (iy < 0 || iy >= p->in_h) continue;
                for (kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * p->dil_w;
                    const int8_t *x;
                    if (ix < 0 || ix >= p->in_w) continue;
                    x = in + (iy * p->in_w + ix) * p->c;
                    if (!any) {
                        for (c = 0; c < p->c; ++c) y[c] = x[c];
                        any = 1;
                    } else {
                        for (c = 0; c < p->c; ++c) y[c] = x[c] > y[c] ? x[c] : y[c];
                    }
                }
            }
            if (!any) {
                for (c = 0; c < p->c; ++c) y[c] = (int8_t)p->act_min;
            } else {
                for (c = 0; c < p->c; ++c) y[c] = (int8_t)qd_clamp32(y[c], p->act_min, p->act_max);
            }
        }
    }
}

#define QD_POOL_CHUNK 64

void qd_avg_pool(const qd_pool_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, ky, kx, c, c0;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *y = out + (oy * p->out_w + ox) * p->c;
            for (c0 = 0; c0 < p->c; c0 += QD_POOL_CHUNK) {
                int32_t acc[QD_POOL_CHUNK], count = 0;
                const int32_t n = p->c - c0 < QD_POOL_CHUNK ? p->c - c0 : QD_POOL_CHUNK;
#if QD_PROFILE_FPGA
                int32_t k = 0;
#endif
                for (c = 0; c < n; ++c) acc[c] = 0;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx;
                        const int8_t *x;
                        if (ix < 0 || ix >= p->in_w) continue;
                        x = in + (iy * p->in_w + ix) * p->c + c0;
                        for (c = 0; c < n; ++c) acc[c] += x[c];
                        ++count;
                    }
                }
#if QD_PROFILE_FPGA
                while (k + 1 < p->n_counts && p->counts[k] < count) ++k;
                for (c = 0; c < n; ++c) {
                    int32_t v = qd_shift_round(acc[c] * p->multiplier[k], p->shift[k]);
                    y[c0 + c] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
                }
#else
                for (c = 0; c < n; ++c) {
                    const int32_t num = acc[c] > 0 ? acc[c] + count / 2 : acc[c] - count / 2;
                    y[c0 + c] = (int8_t)qd_clamp32(num / count, p->act_min, p->act_max);
                }
#endif
            }
        }
    }
}

void qd_mean(const qd_mean_params *p, const int8_t *in, int8_t *out)
{
    int32_t c0, c, i;
    for (c0 = 0; c0 < p->c; c0 += QD_POOL_CHUNK) {
        int32_t acc[QD_POOL_CHUNK];
        const int32_t n = p->c - c0 < QD_POOL_CHUNK ? p->c - c0 : QD_POOL_CHUNK;
        for (c = 0; c < n; ++c) acc[c] = 0;
        for (i = 0; i < p->hw; ++i) {
            const int8_t *x = in + i * p->c + c0;
            for (c = 0; c < n; ++c) acc[c] += x[c];
        }
        for (c = 0; c < n; ++c) {
#if QD_PROFILE_FPGA
            int32_t v = qd_shift_round(acc[c] * p->multiplier, p->shift);
#else
            int32_t v = qd_mbqm(acc[c] - p->zp_in * p->hw, p->multiplier, p->shift) + p->zp_out;
#endif
            out[c0 + c] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
        }
    }
}
