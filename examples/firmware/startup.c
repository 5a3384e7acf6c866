/* Cortex-M4 startup for a qdeploy C bundle under semihosting (newlib's rdimon).
 *
 * Reset_Handler enables the FPU (newlib is built for hard float, and the CPU
 * starts with it off), copies .data from flash to RAM, then calls newlib's
 * _start, which zeroes .bss, sets up stdio over semihosting and calls main();
 * main's return value becomes QEMU's exit status. A fault ends the run through
 * semihosting with a failure status instead of hanging. SysTick counts CPU
 * clock ticks for board_ticks().
 *
 * Written for qdeploy's examples/firmware (see its README.md). */
#include <stdint.h>

#include "board.h"

extern void _start(void);
extern uint32_t __data_start__, __data_end__, __data_load__, __StackTop;

#define SCB_CPACR   (*(volatile uint32_t *)0xE000ED88u)
#define SYST_CSR    (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR    (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR    (*(volatile uint32_t *)0xE000E018u)
#define SYST_MAX    0x00FFFFFFu

static volatile uint32_t systick_wraps;

void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void);

/* semihosting SYS_EXIT with "run-time error": QEMU exits with status 1 */
static void semihosting_fail(void)
{
    register uint32_t r0 __asm__("r0") = 0x18u;
    register uint32_t r1 __asm__("r1") = 0x20023u;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

void Reset_Handler(void)
{
    uint32_t *src = &__data_load__;
    uint32_t *dst = &__data_start__;
    SCB_CPACR |= 0xFu << 20;                  /* CP10, CP11: full access */
    __asm__ volatile("dsb\n\tisb" : : : "memory");
    while (dst < &__data_end__) {
        *dst++ = *src++;
    }
    _start();
    semihosting_fail();                        /* _start never returns */
}

void Fault_Handler(void)
{
    semihosting_fail();
}

void SysTick_Handler(void)
{
    systick_wraps++;
}

void board_timer_start(void)
{
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0;
    SYST_CSR = 7u;                             /* CPU clock, interrupt, enable */
}

uint64_t board_ticks(void)
{
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * (SYST_MAX + 1u) + (SYST_MAX - value);
}

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used))
static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)&__StackTop,          /* initial stack pointer */
    Reset_Handler,
    Fault_Handler,                             /* NMI */
    Fault_Handler,                             /* HardFault */
    Fault_Handler,                             /* MemManage */
    Fault_Handler,                             /* BusFault */
    Fault_Handler,                             /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler,                             /* SVCall */
    Fault_Handler,                             /* DebugMon */
    0,
    Fault_Handler,                             /* PendSV */
    SysTick_Handler,
};
