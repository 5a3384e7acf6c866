/* Test shim (tests/emit/test_c_fixedpoint.py): the runtime's fixed-point functions and the
 * softmax kernel as plain exported functions for ctypes. */
#include "qd_kernels.h"

int32_t shim_srdhm(int32_t a, int32_t b) { return qd_srdhm(a, b); }
int32_t shim_rdbpot(int32_t x, int32_t e) { return qd_rdbpot(x, e); }
int32_t shim_mbqm(int32_t x, int32_t m, int32_t s) { return qd_mbqm(x, m, s); }
int32_t shim_shift_round(int32_t x, int32_t s) { return qd_shift_round(x, s); }

void shim_softmax(const int8_t *x, int32_t n, int32_t multiplier, int32_t left_shift, int32_t diff_min, int8_t *y)
{
    qd_softmax_params p;
    p.multiplier = multiplier;
    p.left_shift = left_shift;
    p.diff_min = diff_min;
    p.len = n;
    p.stride = 1;
    p.rows.ndim = 1;
    p.rows.dims[0] = 1;
    p.rows.s[0][0] = p.rows.s[1][0] = p.rows.s[2][0] = 0;
    qd_softmax(&p, x, y);
}
