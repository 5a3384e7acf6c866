/* Runs a qdeploy C bundle bare-metal: reads int8 input samples from the host
 * file input.bin (semihosting), calls model_invoke() on each, writes the int8
 * outputs to output.bin and prints them with the CPU ticks each call took.
 * Exit status: 0 = every sample ran, 1 = model_invoke failed, 2 = no input.
 *
 * input.bin holds N samples back to back, each MODEL_INPUT_BYTES bytes in the
 * bundle's layout (NHWC, int8, already quantized: see model.h); output.bin gets
 * N x MODEL_OUTPUT_BYTES bytes. Written for qdeploy's examples/firmware. */
#include <stdint.h>
#include <stdio.h>

#include "board.h"
#include "model.h"

#define PRINT_MAX 16   /* output values printed per sample (all are in output.bin) */

static int8_t input[MODEL_INPUT_BYTES];
static int8_t output[MODEL_OUTPUT_BYTES];

int main(void)
{
    FILE *in = fopen("input.bin", "rb");
    FILE *out = fopen("output.bin", "wb");
    unsigned long n = 0;
    if (in == NULL || out == NULL) {
        printf("cannot open input.bin / output.bin in QEMU's working directory\n");
        return 2;
    }
    board_timer_start();
    while (fread(input, 1, sizeof input, in) == sizeof input) {
        uint64_t t0 = board_ticks();
        int rc = model_invoke(input, output);
        uint64_t ticks = board_ticks() - t0;
        unsigned long i, best = 0;
        if (rc != 0) {
            printf("sample %lu: model_invoke returned %d\n", n, rc);
            return 1;
        }
        fwrite(output, 1, sizeof output, out);
        for (i = 1; i < sizeof output; i++) {
            if (output[i] > output[best]) {
                best = i;
            }
        }
        printf("sample %lu: %lu ticks, argmax %lu, output", n, (unsigned long)ticks, best);
        for (i = 0; i < sizeof output && i < PRINT_MAX; i++) {
            printf(" %d", output[i]);
        }
        printf(sizeof output > PRINT_MAX ? " ...\n" : "\n");
        n++;
    }
    fclose(in);
    fclose(out);
    printf("%lu sample(s), arena %lu bytes\n", n, (unsigned long)MODEL_ARENA_BYTES);
    return n > 0 ? 0 : 2;
}
