/* interrupt.h — the process-wide "stop what you are doing" flag behind Ctrl-C.
 *
 * The hyblua executable raises the flag from its SIGINT handler and clears it just before it starts
 * each chunk (a REPL line, a -e string, a script). Long-running C code — a kernel's outer loop over
 * chunks or time steps, an optimiser or training step, a file loader — polls hb_interrupted() at
 * convenient points and, when it is set, stops early, releases what it allocated and reports failure;
 * the Lua binding then raises the Lua error "interrupted!". Library code never clears the flag: it
 * stays raised until the executable starts the next chunk, so every loop on the way out sees it.
 *
 * All three functions are async-signal-safe and may be called from any thread (the pool's workers
 * may poll too). Plain C, no Lua.
 */
#ifndef HB_INTERRUPT_H
#define HB_INTERRUPT_H

/* Nonzero once an interrupt has been requested and not yet cleared. Cheap: one atomic load. */
int hb_interrupted(void);

/* Request an interrupt (the SIGINT handler calls this; tests may too). */
void hb_interrupt_raise(void);

/* Forget a pending request. Only the executable calls this, before each new chunk. */
void hb_interrupt_clear(void);

/* Defer interrupts (on = 1) or not (on = 0); returns the previous setting. While deferred, Ctrl-C only
 * raises the flag: code polls hb_interrupted() at safe points (e.g. between training steps). */
int hb_interrupt_defer(int on);
int hb_interrupt_deferred(void);

#endif
