/* Test harness for a qdeploy C bundle (tests/emit/c_bundle.py): reads N int8 samples of
 * MODEL_INPUT_BYTES from argv[1], runs each twice -- once in an arena of exactly
 * MODEL_ARENA_BYTES between guard canaries, once in an exactly sized heap arena (for
 * AddressSanitizer) filled with other garbage -- checks the canaries and that both runs
 * agree, and writes the outputs to argv[2]. Exit 3: canary overwritten, 4: runs differ. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

#define GUARD 64
#define CANARY 0xA5

int main(int argc, char **argv)
{
    FILE *fi, *fo;
    unsigned char *block;
    int8_t *exact, *in, *out1, *out2;
    long n = 0, i, k;
    unsigned seed = 12345u;
    if (argc != 3) return 2;
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) return 2;
    block = (unsigned char *)malloc(MODEL_ARENA_BYTES + 2 * GUARD);
    exact = (int8_t *)malloc(MODEL_ARENA_BYTES > 0 ? MODEL_ARENA_BYTES : 1);
    in = (int8_t *)malloc(MODEL_INPUT_BYTES);
    out1 = (int8_t *)malloc(MODEL_OUTPUT_BYTES);
    out2 = (int8_t *)malloc(MODEL_OUTPUT_BYTES);
    if (!block || !exact || !in || !out1 || !out2) return 2;
    while (fread(in, 1, MODEL_INPUT_BYTES, fi) == MODEL_INPUT_BYTES) {
        memset(block, CANARY, MODEL_ARENA_BYTES + 2 * GUARD);
        for (i = 0; i < MODEL_ARENA_BYTES; ++i) {
            seed = seed * 1103515245u + 12345u;
            block[GUARD + i] = (unsigned char)(seed >> 16);
            exact[i] = (int8_t)(unsigned char)~(seed >> 16);
        }
        memset(out1, 0x11, MODEL_OUTPUT_BYTES);
        memset(out2, 0x22, MODEL_OUTPUT_BYTES);
        if (model_invoke_arena((int8_t *)(block + GUARD), in, out1) != 0) return 1;
        for (k = 0; k < GUARD; ++k) {
            if (block[k] != CANARY || block[GUARD + MODEL_ARENA_BYTES + k] != CANARY) {
                fprintf(stderr, "sample %ld: arena guard byte %ld overwritten\n", n, k);
                return 3;
            }
        }
        if (model_invoke_arena(exact, in, out2) != 0) return 1;
        if (memcmp(out1, out2, MODEL_OUTPUT_BYTES) != 0) {
            fprintf(stderr, "sample %ld: outputs depend on the arena's previous contents\n", n);
            return 4;
        }
        if (fwrite(out1, 1, MODEL_OUTPUT_BYTES, fo) != MODEL_OUTPUT_BYTES) return 2;
        ++n;
    }
    fclose(fi);
    fclose(fo);
    free(block);
    free(exact);
    free(in);
    free(out1);
    free(out2);
    return 0;
}
