"""TFLite int8 kernel recipes: Prepare (``*_params``) and Eval (``*_eval``).

Each op whose TFLite reference kernel has its own integer arithmetic gets a
Prepare function that makes every float -> int decision once (returning a
JSON-able dict of Python ints) and an Eval function that uses integer numpy
arithmetic only. The quantizer calls the Prepare functions and stores the
dicts in the QGraph; the reference interpreter calls the Eval functions; the C
runtime implements the same Eval arithmetic. Scales are taken as float32, as
a TFLite file stores them. tests/quant/test_recipes.py runs each recipe
against TFLite Micro (bit-exact judge) on one-op int8 models.

=============================  ==============================================
module                         ops
=============================  ==============================================
:mod:`.quantize`               QUANTIZE float->int8, int8->int8, DEQUANTIZE
:mod:`.elementwise`            ADD, SUB, MUL (broadcasting)
:mod:`.activations`            LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU
:mod:`.luts`                   256-entry tables of the above, float LUTs
:mod:`.pooling`                AVERAGE_POOL_2D, MEAN over H, W
:mod:`.softmax`                SOFTMAX
:mod:`.prelu`                  PRELU
:mod:`.resize`                 RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR
:mod:`.pow2`                   power-of-two scales (fpga profile)
:mod:`.gemmlowp`               gemmlowp fixed-point exp/logistic/tanh
=============================  ==============================================
"""
from .activations import (hard_swish_eval, hard_swish_params, leaky_relu_eval,
                          leaky_relu_params, logistic_eval, logistic_params, tanh_eval,
                          tanh_params)
from .elementwise import add_eval, add_params, mul_eval, mul_params, sub_eval, sub_params
from .luts import (FUNCTIONS, float_lut, hard_swish_lut, leaky_relu_lut, logistic_lut,
                   lut_eval, lut_vs_recipe_error, tanh_lut)
from .pooling import avg_pool2d_eval, avg_pool_eval, mean_eval, mean_params, window_counts
from .pow2 import (avg_pool_shift_eval, avg_pool_shift_params, mean_shift_eval,
                   mean_shift_params, pow2_scale)
from .prelu import prelu_eval, prelu_params
from .quantize import dequantize, quantize_input, requantize_eval, requantize_params
from .resize import (bilinear_taps, nearest_indices, resize_bilinear_eval, resize_bilinear_params,
                     resize_nearest_eval, tflite_resize_flags)
from .softmax import SOFTMAX_MAX_DEPTH, softmax_eval, softmax_params

__all__ = [
    "add_eval", "add_params", "bilinear_taps", "avg_pool2d_eval", "avg_pool_eval", "avg_pool_shift_eval",
    "avg_pool_shift_params", "dequantize", "float_lut",
    "FUNCTIONS", "hard_swish_eval", "hard_swish_lut", "hard_swish_params", "leaky_relu_eval",
    "leaky_relu_lut", "leaky_relu_params", "logistic_eval", "logistic_lut", "logistic_params",
    "lut_eval", "lut_vs_recipe_error", "mean_eval", "mean_params", "mean_shift_eval",
    "mean_shift_params", "mul_eval", "mul_params",
    "nearest_indices", "pow2_scale", "prelu_eval", "prelu_params", "quantize_input",
    "requantize_eval", "requantize_params",
    "resize_bilinear_eval", "resize_bilinear_params", "resize_nearest_eval", "SOFTMAX_MAX_DEPTH", "softmax_eval",
    "softmax_params", "sub_eval", "sub_params", "tanh_eval", "tanh_lut", "tanh_params",
    "tflite_resize_flags", "window_counts",
]
