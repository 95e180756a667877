/* rpc_test.h — the check macro of the C tests in tests/rpc. */
#ifndef BG_RPC_TEST_H
#define BG_RPC_TEST_H

#include <stdio.h>
#include <stdlib.h>

/* Fail the test with file:line and the condition's text. */
#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

#endif
