/* out[i] = in[7 - i] + 1 (wrapping), after in[0] x 1000 iterations of an
 * 8-instruction loop; in[0] < 0 faults (a store to unmapped memory). */
#include "model.h"
#include "qd_loop.h"

static int8_t arena[MODEL_ARENA_BYTES];

int model_invoke(const int8_t *in, int8_t *out)
{
    int i;
    if (in[0] < 0) {
        *(volatile int32_t *)0x70000000u = 1;
    }
    qd_spin((uint32_t)in[0] * 1000u);
    for (i = 0; i < MODEL_INPUT_BYTES; i++) {
        arena[i] = (int8_t)(uint8_t)((uint8_t)in[MODEL_INPUT_BYTES - 1 - i] + 1u);
    }
    for (i = 0; i < MODEL_OUTPUT_BYTES; i++) {
        out[i] = arena[i];
    }
    return 0;
}
