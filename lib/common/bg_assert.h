/*
 * bg_assert.h — invariants checked in code, always on.
 *
 * BG_ASSERT(cond, fmt, ...) checks an invariant a header or a state
 * diagram states; when it does not hold the process stops at once with
 * file:line, the condition and a message naming the state it found. It is
 * compiled into every build (Release too): an invariant that is false means
 * the guard no longer knows what it is doing, and a guard that keeps
 * deciding then is worse than one that stops (the supervisor restarts it,
 * the agent's calls fail closed meanwhile). Keep the condition cheap — an
 * integer compare, a pointer test; never a walk over a table on the hot
 * path.
 *
 * BG_PANIC(fmt, ...) is the same for a state that cannot be reached (the
 * default of a switch over an enum, a code that a callee promised never to
 * return).
 *
 * Both write one line with one write(2) (async-signal-safe formatting is
 * not promised; the message is formatted on the stack) and call abort(),
 * so a core dump and ASan's report show the stack. Not for input checks:
 * bad input gets a bg_err and a status code, never an abort.
 */
#ifndef BG_ASSERT_H
#define BG_ASSERT_H

/* Never returns. file/line/cond come from the macros. */
void bg__panic(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, cold, format(printf, 4, 5)));

#define BG_ASSERT(cond, ...)                                                                       \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            bg__panic(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

#define BG_PANIC(...) bg__panic(__FILE__, __LINE__, NULL, __VA_ARGS__)

#endif
