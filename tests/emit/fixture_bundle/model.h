/* A hand-written stand-in for a qdeploy C bundle (the API of OUT/c/model.h), for
 * tests/emit/test_qemu.py: it checks the firmware harness, not a model. */
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>

#define MODEL_INPUT_BYTES 8
#define MODEL_OUTPUT_BYTES 8
#define MODEL_ARENA_BYTES 16

int model_invoke(const int8_t *in, int8_t *out);

#endif
