/*
 * test_bg_assert.c — BG_ASSERT and BG_PANIC (lib/common/bg_assert.h): a
 * false invariant stops the process with SIGABRT and one line naming
 * file:line, the condition and the state; a true one costs nothing and
 * evaluates its condition once. Each failing case runs in a child process
 * whose stderr is captured through a pipe.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bg_test.h"
#include "common/bg_assert.h"

/* Run fn in a child; its stderr into buf. Returns the wait status. */
static int in_child(void (*fn)(void), char *buf, size_t len)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        fn();
        _exit(0); /* only when fn did not stop the process */
    }
    close(p[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(p[0], buf + got, len - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(p[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    return st;
}

static int calls;
static int count_call(int v)
{
    calls++;
    return v;
}

static void assert_false(void)
{
    int state = 7;
    BG_ASSERT(count_call(state) == 3, "call in state %d", state);
}

static void panic(void)
{
    BG_PANIC("method %d has no handler", 42);
}

static void assert_true(void)
{
    BG_ASSERT(count_call(1) == 1, "unreached");
    BG_ASSERT(calls == 1, "condition evaluated %d times", calls);
}

int main(void)
{
    char out[2048];
    int st = in_child(assert_false, out, sizeof out);
    printf("assert_false: %s", out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x", st);
    CHECK(strstr(out, "test_bg_assert.c:") != NULL, "no file:line in '%s'", out);
    CHECK(strstr(out, "invariant failed: count_call(state) == 3: call in state 7\n") != NULL,
          "'%s'", out);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1, "not one line: '%s'", out);

    st = in_child(panic, out, sizeof out);
    printf("panic: %s", out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x", st);
    CHECK(strstr(out, "unreachable state: method 42 has no handler\n") != NULL, "'%s'", out);

    st = in_child(assert_true, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, stderr '%s'", st, out);
    CHECK_STR(out, "");
    CHECK_DONE("test_bg_assert");
}
