"""The C bundle: ``OUT/c/`` with model.h (the API), model.c (the schedule: one kernel
call per layer with its constant parameters), model_weights.h/.c (const arrays in
flash), the runtime kernels (``runtime/qd_*.c/h``, copied in), a Makefile, a
CMakeLists.txt and example_main.c.

``emit(qg, ctx)`` lowers every node of the integer body (lower.py), plans the
activation arena (qdeploy/emit/arena.py), checks the target's memory limits and renders the
templates (templates/*.j2). ``run`` (host.py) is the ``qdeploy run --backend c``
runner. C API (NHWC int8, tensors back to back for several inputs/outputs)::

    int model_invoke(const int8_t *in, int8_t *out);                  /* static arena */
    int model_invoke_arena(int8_t *arena, const int8_t *in, int8_t *out); /* MODEL_ARENA_BYTES */
"""
from __future__ import annotations

from .bundle import build, emit  # noqa: F401
from .host import run  # noqa: F401
