/* qdeploy C runtime: data movement. Concat, split, slice, pad, reshape, transpose,
 * depth-to-space, space-to-depth and nearest-neighbour resize are strided copies
 * (qd_copy) whose strides the emitter derived from the layouts; the rare pattern that is
 * no strided copy is a gather through an index table. Bilinear resize follows TFLite's
 * ResizeBilinearInteger (Q10 coordinates, tables computed by the emitter).
 * Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#include "qd_kernels.h"

void qd_copy(const qd_walk *w, const int8_t *in, int8_t *out)
{
    const int32_t last = w->ndim - 1, n = w->dims[last];
    const int32_t so = w->s[0][last], si = w->s[1][last];
    int32_t idx[QD_MAX_DIMS] = {0}, off[3] = {0, 0, 0}, i;
    do {
        const int8_t *x = in + off[1];
        int8_t *y = out + off[0];
        if (so == 1 && si == 1) {
            for (i = 0; i < n; ++i) y[i] = x[i];
        } else {
            for (i = 0; i < n; ++i) y[i * so] = x[i * si];
        }
    } while (qd_walk_next(w, idx, off));
}

void qd_gather(int32_t n, const int32_t *index, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) out[i] = in[index[i]];
}

void qd_fill(int32_t n, int8_t value, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) out[i] = value;
}

void qd_resize_bilinear(const qd_resize_params *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, c;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = p->y[3 * oy], y1 = p->y[3 * oy + 1], fy = p->y[3 * oy + 2];
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = p->x[3 * ox], x1 = p->x[3 * ox + 1], fx = p->x[3 * ox + 2];
            const int8_t *a = in + (y0 * p->in_w + x0) * p->c, *b = in + (y1 * p->in_w + x0) * p->c;
            const int8_t *d = in + (y0 * p->in_w + x1) * p->c, *e = in + (y1 * p->in_w + x1) * p->c;
            const int32_t w00 = (1024 - fy) * (1024 - fx), w10 = fy * (1024 - fx);
            const int32_t w01 = (1024 - fy) * fx, w11 = fy * fx;
            int8_t *y = out + (oy * p->out_w + ox) * p->c;
            for (c = 0; c < p->c; ++c) {
                const int32_t acc = a[c] * w00 + b[c] * w10 + d[c] * w01 + e[c] * w11;
                y[c] = (int8_t)(acc > 0 ? (acc + (1 << 19)) >> 20 : -(((1 << 19) - acc) >> 20));
            }
        }
    }
}
