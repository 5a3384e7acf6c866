#ifndef QD_LOOP_H
#define QD_LOOP_H
#include <stdint.h>
void qd_spin(uint32_t n);   /* n iterations of 8 Thumb instructions */
#endif
