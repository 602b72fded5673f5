/* interrupt.c — the Ctrl-C flag (see interrupt.h).
 *
 * C11 (7.14.1.1) lets a signal handler write only to a `volatile sig_atomic_t` or to a lock-free
 * atomic object. The flag is both: volatile sig_atomic_t for the handler, _Atomic so that worker
 * threads reading it while the main thread's handler writes it is not a data race.
 */
#include "interrupt.h"
#include <signal.h>
#include <stdatomic.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the interrupt flag must be a lock-free atomic");

static volatile _Atomic sig_atomic_t interrupt_flag = 0;

int hb_interrupted(void) {
    return atomic_load_explicit(&interrupt_flag, memory_order_relaxed) != 0;
}

void hb_interrupt_raise(void) {
    atomic_store(&interrupt_flag, 1);
}

void hb_interrupt_clear(void) {
    atomic_store(&interrupt_flag, 0);
}

/* Deferral: a training loop that must not be cut mid-step (between backward and the optimizer update)
 * defers interrupts; the executable's Lua hook then leaves the flag raised instead of raising an
 * error, and the loop polls hb_interrupted() at its next step boundary. */
static volatile _Atomic int defer_flag = 0;

int hb_interrupt_defer(int on) {
    return atomic_exchange(&defer_flag, on ? 1 : 0);
}

int hb_interrupt_deferred(void) {
    return atomic_load_explicit(&defer_flag, memory_order_relaxed) != 0;
}
