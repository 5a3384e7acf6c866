#include "qd_loop.h"

void qd_spin(uint32_t n)
{
    if (n == 0) {
        return;
    }
    __asm__ volatile("1:\n\t"
                     "nop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\t"
                     "subs %0, %0, #1\n\t"
                     "bne 1b"
                     : "+r"(n) : : "cc");
}
