/* qdeploy C runtime: element-wise kernels (broadcasting by strides): Add, Sub, Mul,
 * Maximum, Minimum, PRelu, Requantize, LeakyShift, table lookup, clamp.
 * q31 profile: TFLite's integer recipes (reference_integer_ops::Add, reference_ops::Sub,
 * reference_integer_ops::Mul, BroadcastPrelu4DSlow, Requantize). fpga profile: shifts only.
 * Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#include "qd_kernels.h"

static void qd_eltwise_row(const qd_eltwise_params *p, const int8_t *a, int32_t sa,
                           const int8_t *b, int32_t sb, int8_t *y, int32_t sy, int32_t n)
{
    int32_t i, v;
    switch (p->op) {
    case QD_MAX:
        for (i = 0; i < n; ++i) {
            v = a[i * sa] > b[i * sb] ? a[i * sa] : b[i * sb];
            y[i * sy] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
        }
        return;
    case QD_MIN:
        for (i = 0; i < n; ++i) {
            v = a[i * sa] < b[i * sb] ? a[i * sa] : b[i * sb];
            y[i * sy] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
        }
        return;
#if QD_PROFILE_FPGA
    case QD_MUL:
        for (i = 0; i < n; ++i) {
            v = qd_shift_round((int32_t)a[i * sa] * b[i * sb], p->out_shift);
            y[i * sy] = (int8_t)qd_clamp32(qd_clamp32(v, -65536, 65536) + p->zp_out, p->act_min, p->act_max);
        }
        return;
    default:
        for (i = 0; i < n; ++i) {
            int32_t x1 = qd_sat_shl(a[i * sa], p->a_shift), x2 = qd_sat_shl(b[i * sb], p->b_shift);
            v = qd_shift_round(p->op == QD_SUB ? x1 - x2 : x1 + x2, p->out_shift);
            y[i * sy] = (int8_t)qd_clamp32(qd_clamp32(v, -65536, 65536) + p->zp_out, p->act_min, p->act_max);
        }
        return;
#else
    case QD_MUL:
        for (i = 0; i < n; ++i) {
            int32_t prod = ((int32_t)a[i * sa] - p->zp1) * ((int32_t)b[i * sb] - p->zp2);
            v = qd_mbqm(prod, p->multiplier_out, p->shift_out) + p->zp_out;
            y[i * sy] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
        }
        return;
    default: {
        const int32_t scale = (int32_t)1 << p->left_shift;
        for (i = 0; i < n; ++i) {
            int32_t x1 = qd_mbqm_lt1(((int32_t)a[i * sa] - p->zp1) * scale, p->multiplier1, p->shift1);
            int32_t x2 = qd_mbqm_lt1(((int32_t)b[i * sb] - p->zp2) * scale, p->multiplier2, p->shift2);
            v = qd_mbqm_lt1(p->op == QD_SUB ? x1 - x2 : x1 + x2, p->multiplier_out, p->shift_out) + p->zp_out;
            y[i * sy] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
        }
        return;
    }
#endif
    }
}

void qd_eltwise(const qd_eltwise_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    const qd_walk *w = &p->walk;
    const int32_t last = w->ndim - 1;
    int32_t idx[QD_MAX_DIMS] = {0}, off[3] = {0, 0, 0};
    do {
        qd_eltwise_row(p, a + off[1], w->s[1][last], b + off[2], w->s[2][last],
                       out + off[0], w->s[0][last], w->dims[last]);
    } while (qd_walk_next(w, idx, off));
}

void qd_prelu(const qd_prelu_params *p, const int8_t *in, const int8_t *alpha, int8_t *out)
{
    const qd_walk *w = &p->walk;
    const int32_t last = w->ndim - 1, n = w->dims[last];
    const int32_t sy = w->s[0][last], sx = w->s[1][last], sa = w->s[2][last];
    int32_t idx[QD_MAX_DIMS] = {0}, off[3] = {0, 0, 0}, i;
    do {
        const int8_t *x = in + off[1], *al = alpha + off[2];
        int8_t *y = out + off[0];
        for (i = 0; i < n; ++i) {
#if QD_PROFILE_FPGA
            int32_t xv = x[i * sx];
            int32_t v = xv >= 0 ? qd_shift_round(xv, p->pos_shift)
                                : qd_shift_round(xv * al[i * sa], p->neg_shift);
            v = qd_clamp32(v, -65536, 65536) + p->zp_out;
#else
            int32_t xv = (int32_t)x[i * sx] - p->zp_in;
            int32_t v = xv >= 0 ? qd_mbqm(xv, p->multiplier_1, p->shift_1)
                                : qd_mbqm(xv * ((int32_t)al[i * sa] - p->zp_alpha), p->multiplier_2, p->shift_2);
            v += p->zp_out;
#endif
            y[i * sy] = (int8_t)qd_clamp32(v, p->act_min, p->act_max);
        }
    } while (qd_walk_next(w, idx, off));
}

void qd_requantize(const qd_unary_params *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->n; ++i) {
#if QD_PROFILE_FPGA
        int32_t v = qd_shift_round((int32_t)in[i] - p->zp_in, p->shift);
#else
        int32_t v = qd_mbqm((int32_t)in[i] - p->zp_in, p->multiplier, p->shift);
#endif
        out[i] = (int8_t)qd_clamp32(qd_clamp32(v, -65536, 65536) + p->zp_out, p->act_min, p->act_max);
    }
}

void qd_leaky_shift(const qd_unary_params *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->n; ++i) {
        int32_t x = in[i];
        int32_t v = x >= 0 ? qd_shift_round(x, p->pos_shift)
                           : qd_shift_round(x * p->neg_multiplier, p->neg_shift);
        out[i] = (int8_t)qd_clamp32(qd_clamp32(v, -65536, 65536) + p->zp_out, p->act_min, p->act_max);
    }
}

void qd_lut(const int8_t *table, int32_t n, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) out[i] = table[(int32_t)in[i] + 128];
}

void qd_clamp(int32_t n, int32_t lo, int32_t hi, int8_t *buf)
{
    int32_t i;
    for (i = 0; i < n; ++i) buf[i] = (int8_t)qd_clamp32(buf[i], lo, hi);
}
