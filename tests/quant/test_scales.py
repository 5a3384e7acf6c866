"""Weight scales: the int32 bias leaves room for the dot product it is added to."""
import numpy as np
import pytest

from qdeploy.quant.scales import INT32_LIMIT, quantize_bias, quantize_weights, weight_scales


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("wmax", [127, 63])
def test_bias_plus_worst_dot_product_fits_int32(per_channel, wmax):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, (4, 64, 3, 3))          # K = 576 terms per output
    b = np.array([1e5, -3e5, 0.5, 2e4])            # folded-BN biases far beyond the weights
    s_in, s_out = 0.008, 400.0
    s_w, notes = weight_scales(w, per_channel, False, s_in, s_out, b, wmax=wmax)
    wq = quantize_weights(w, s_w, wmax=wmax)
    bq, _ = quantize_bias(b, s_in, s_w, 4)
    worst = np.abs(bq.astype(np.int64)) + 255 * np.abs(wq.reshape(4, -1).astype(np.int64)).sum(axis=1)
    assert worst.max() <= INT32_LIMIT, worst.max() - INT32_LIMIT
    assert any("int32 accumulator" in n for n in notes)
    # the raise is no larger than the bound needs: the largest bias still uses most of int32
    assert np.abs(bq).max() > INT32_LIMIT * 0.9
