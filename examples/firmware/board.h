/* The few board services examples/firmware/main.c uses (startup.c). */
#ifndef BOARD_H
#define BOARD_H
#include <stdint.h>

/* CPU clock of the MPS2+ AN386 (25 MHz); under `qemu-system-arm -icount
 * shift=0` one instruction takes 1 ns, so one tick is 40 instructions. */
#define BOARD_CPU_HZ 25000000u

void board_timer_start(void);
uint64_t board_ticks(void);   /* CPU clock ticks since board_timer_start() */

#endif
