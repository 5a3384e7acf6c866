/* qdeploy C runtime: int8 softmax with TFLite's integer recipe (reference_ops::Softmax for
 * int8: gemmlowp exp_on_negative_values in Q5.26, sums in Q12.19, GetReciprocal; output
 * scale 1/256, zero point -128). Integers only; q31 profile only (the fpga target runs
 * softmax on the host). Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#include "qd_kernels.h"

#if !QD_PROFILE_FPGA

static int32_t qd_add32(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t qd_sub32(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* RoundingDivideByPOT for exponents up to 62 */
static int32_t qd_rdbpot64(int64_t x, int e)
{
    int64_t mask = ((int64_t)1 << e) - 1;
    int64_t remainder = x & mask;
    int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)((x >> e) + (remainder > threshold ? 1 : 0));
}

static int32_t qd_exp_quarter(int32_t a)   /* exp(a) for F0 a in [-1/4, 0) */
{
    const int32_t constant_term = 1895147668, constant_1_over_3 = 715827883;
    int32_t x = qd_add32(a, 1 << 28);
    int32_t x2 = qd_srdhm(x, x), x3 = qd_srdhm(x2, x), x4 = qd_srdhm(x2, x2);
    int32_t x4_over_4 = qd_rdbpot(x4, 2);
    int32_t poly = qd_rdbpot(qd_add32(qd_srdhm(qd_add32(x4_over_4, x3), constant_1_over_3), x2), 1);
    return qd_add32(constant_term, qd_srdhm(constant_term, qd_add32(x, poly)));
}

static int32_t qd_exp_neg_q5(int32_t a)   /* exp_on_negative_values(FixedPoint<int32, 5>) -> F0 */
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24;
    int32_t a_mod = qd_sub32(a & (one_quarter - 1), one_quarter);
    int32_t result = qd_exp_quarter(qd_sat_shl(a_mod, 5));
    int32_t remainder = qd_sub32(a_mod, a);
    int k;
    for (k = 0; k < 7; ++k) {
        if (remainder & ((int32_t)1 << (24 + k))) result = qd_srdhm(result, barrel[k]);
    }
    return a == 0 ? INT32_MAX : result;
}

static int32_t qd_one_over_one_plus_x(int32_t a)   /* 1 / (1 + a), F0 a in [0, 1) */
{
    int64_t sum = (int64_t)a + INT32_MAX;
    int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = qd_add32(1515870810, qd_srdhm(half_den, -1010580540));
    int k;
    for (k = 0; k < 3; ++k) {
        int32_t one_minus = qd_sub32(1 << 29, qd_srdhm(half_den, x));
        x = qd_add32(x, qd_sat_shl(qd_srdhm(x, one_minus), 2));
    }
    return qd_sat_shl(x, 1);
}

void qd_softmax(const qd_softmax_params *p, const int8_t *in, int8_t *out)
{
    const qd_walk *w = &p->rows;
    const int32_t last = w->ndim - 1;
    int32_t idx[QD_MAX_DIMS] = {0}, off[3] = {0, 0, 0};
    do {
        int32_t r;
        for (r = 0; r < w->dims[last]; ++r) {
            const int8_t *x = in + off[1] + r * w->s[1][last];
            int8_t *y = out + off[0] + r * w->s[0][last];
            int32_t i, max_in = -128, sum = 0, headroom = 0, recip, bits_over_unit;
            uint32_t u;
            for (i = 0; i < p->len; ++i) max_in = x[i * p->stride] > max_in ? x[i * p->stride] : max_in;
            for (i = 0; i < p->len; ++i) {
                int32_t diff = (int32_t)x[i * p->stride] - max_in;
                if (diff >= p->diff_min) {
                    int32_t scaled = qd_srdhm((int32_t)((int64_t)diff * ((int64_t)1 << p->left_shift)), p->multiplier);
                    sum = qd_add32(sum, qd_rdbpot(qd_exp_neg_q5(scaled), 12));
                }
            }
            u = (uint32_t)sum;
            while (headroom < 32 && !(u & 0x80000000u)) { u <<= 1; ++headroom; }
            bits_over_unit = 12 - headroom;
            recip = qd_one_over_one_plus_x((int32_t)(u - 0x80000000u));
            for (i = 0; i < p->len; ++i) {
                int32_t diff = (int32_t)x[i * p->stride] - max_in, v = -128;
                if (diff >= p->diff_min) {
                    int32_t scaled = qd_srdhm((int32_t)((int64_t)diff * ((int64_t)1 << p->left_shift)), p->multiplier);
                    v = qd_rdbpot64(qd_srdhm(recip, qd_exp_neg_q5(scaled)), bits_over_unit + 31 - 8) - 128;
                }
                y[i * p->stride] = (int8_t)qd_clamp32(v, -128, 127);
            }
        }
    } while (qd_walk_next(w, idx, off));
}

#endif
