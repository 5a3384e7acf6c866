/* qdeploy C runtime: the fixed-point arithmetic every kernel shares.
 *
 * Q31 profile (arm, cortex-m): TFLite's MultiplyByQuantizedMultiplier with double rounding
 * (SaturatingRoundingDoublingHighMul, RoundingDivideByPOT), exactly as TFLite's reference
 * kernels, TFLite Micro and CMSIS-NN compute it (and qdeploy/quant/fixedpoint.py).
 * Shift profile (fpga, QD_PROFILE_FPGA): a rounding arithmetic shift only; nothing here
 * then needs a divide or a 64-bit multiply (the Q31 section is compiled out).
 * C99, integers only. Part of qdeploy (qdeploy/emit/c/runtime), copied into every bundle. */
#ifndef QD_FIXEDPOINT_H
#define QD_FIXEDPOINT_H

#include <stdint.h>
#include "qd_profile.h"

#define QD_MAX_DIMS 8

static inline int32_t qd_clamp32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* x * 2**left saturated to int32 (left >= 0): no signed overflow, no negative shift. */
static inline int32_t qd_sat_shl(int32_t x, int left)
{
    int32_t lim;
    if (left <= 0) return x;
    if (left >= 31) return x > 0 ? INT32_MAX : (x < 0 ? INT32_MIN : 0);
    lim = INT32_MAX >> left;
    if (x > lim) return INT32_MAX;
    if (x < -lim - 1) return INT32_MIN;
    return x * (int32_t)((uint32_t)1 << left);
}

/* The fpga requantisation: (x + 2**(shift-1)) >> shift for shift > 0 (round half up),
 * a saturating left shift for shift <= 0. */
static inline int32_t qd_shift_round(int32_t x, int shift)
{
    if (shift > 0) {
        if (shift >= 32) return 0;
        /* floor(x / 2**shift + 1/2) without forming x + 2**(shift-1) (no overflow) */
        return (x >> shift) + ((x >> (shift - 1)) & 1);
    }
    return qd_sat_shl(x, -shift);
}

#if !QD_PROFILE_FPGA
/* gemmlowp SaturatingRoundingDoublingHighMul */
static inline int32_t qd_srdhm(int32_t a, int32_t b)
{
    int64_t ab;
    int32_t nudge;
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2**e rounded to nearest, ties away from zero; e in [0, 31] */
static inline int32_t qd_rdbpot(int32_t x, int e)
{
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier (shift > 0: left) */
static inline int32_t qd_mbqm(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return qd_rdbpot(qd_srdhm((int32_t)((int64_t)x * ((int64_t)1 << left)), multiplier), right);
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0) */
static inline int32_t qd_mbqm_lt1(int32_t x, int32_t multiplier, int shift)
{
    return qd_rdbpot(qd_srdhm(x, multiplier), -shift);
}
#endif

#endif
