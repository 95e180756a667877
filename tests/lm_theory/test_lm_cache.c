/*
 * test_lm_cache.c — the host language model's score cache
 * (daemon/plugin/plugin_lm_cache.c), on its own:
 *   1. a put is found by the exact (prefix, cont) tokens only: another
 *      token, another split of the same tokens, a longer prefix all miss;
 *   2. least recently used first: with 3 entries, a lookup of the oldest
 *      keeps it, and the next put evicts the one after it;
 *   3. cap 0 keeps nothing; an entry longer than the token bound is not
 *      kept, and entries past the bound evict the oldest;
 *   4. hits and misses are counted;
 *   5. four threads putting and getting overlapping keys always read the
 *      score of the key they asked for (run under ASan in the sanitizer
 *      suite).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "bg_test.h"
#include "plugin/plugin_lm_cache.h"

static int32_t buf[8][4] = {{1, 5, 7, 9}, {1, 5, 7, 8}, {1, 5, 6, 9}, {1, 4, 7, 9},
                            {1, 3, 7, 9}, {1, 2, 7, 9}, {2, 5, 7, 9}, {3, 5, 7, 9}};

static int has(bg__lm_cache *c, int k, double *v)
{
    return bg__lm_cache_get(c, buf[k], 3, buf[k] + 3, 1, v);
}

static void *hammer(void *arg)
{
    bg__lm_cache *c = arg;
    for (int i = 0; i < 20000; i++) {
        int32_t p[3] = {1, i % 7, 7}, q[1] = {i % 5};
        double v = 0;
        if (bg__lm_cache_get(c, p, 3, q, 1, &v))
            CHECK(v == (double)(i % 7) * 10 + i % 5, "key (%d, %d) read %g", i % 7, i % 5, v);
        else
            bg__lm_cache_put(c, p, 3, q, 1, (double)(i % 7) * 10 + i % 5);
    }
    return NULL;
}

int main(void)
{
    bg_err err;
    bg__lm_cache *c = NULL;
    double v = 0;
    /* 1. exact keys */
    CHECK(bg__lm_cache_create(3, &c, &err) == BG_OK, "%s", err.msg);
    bg__lm_cache_put(c, buf[0], 3, buf[0] + 3, 1, -1.5);
    CHECK(has(c, 0, &v) && v == -1.5, "put then get: %g", v);
    CHECK(!has(c, 1, &v), "another continuation token must miss");
    CHECK(!bg__lm_cache_get(c, buf[0], 2, buf[0] + 2, 2, &v), "another split must miss");
    CHECK(!bg__lm_cache_get(c, buf[0], 4, buf[0] + 3, 1, &v), "a longer prefix must miss");
    bg__lm_cache_put(c, buf[0], 3, buf[0] + 3, 1, -2.5); /* refresh, not a second entry */
    size_t n = 0;
    uint64_t hits = 0, misses = 0;
    bg__lm_cache_stats(c, &n, &hits, &misses);
    CHECK(has(c, 0, &v) && v == -2.5 && n == 1, "refreshed: %g, %zu entries", v, n);
    /* 2. LRU: 0, 1, 2 in; 0 looked up; 3 in: 1 goes */
    bg__lm_cache_put(c, buf[1], 3, buf[1] + 3, 1, 1);
    bg__lm_cache_put(c, buf[2], 3, buf[2] + 3, 1, 2);
    CHECK(has(c, 0, &v));
    bg__lm_cache_put(c, buf[3], 3, buf[3] + 3, 1, 3);
    CHECK(has(c, 0, &v) && has(c, 2, &v) && has(c, 3, &v) && v == 3);
    CHECK(!has(c, 1, &v), "the least recently used entry (1) must be evicted");
    bg__lm_cache_stats(c, &n, &hits, &misses);
    CHECK_INT((int)n, 3);
    /* 4. counts: the gets above found 0, 0, 0, 0, 2, 3 and missed 1, two
     * other splits, 1 */
    CHECK(hits == 6 && misses == 4, "hits %llu misses %llu, expected 6 and 4",
          (unsigned long long)hits, (unsigned long long)misses);
    bg__lm_cache_destroy(c);

    /* 3. cap 0; the token bound */
    CHECK(bg__lm_cache_create(0, &c, &err) == BG_OK, "%s", err.msg);
    bg__lm_cache_put(c, buf[0], 3, buf[0] + 3, 1, 1);
    CHECK(!has(c, 0, &v), "cap 0 keeps nothing");
    bg__lm_cache_destroy(c);
    CHECK(bg__lm_cache_create(16, &c, &err) == BG_OK, "%s", err.msg);
    size_t big = BG__LM_CACHE_TOKENS / 3 + 1; /* three do not fit */
    int32_t *t = calloc(BG__LM_CACHE_TOKENS + 1, sizeof *t);
    CHECK(t != NULL);
    bg__lm_cache_put(c, t, BG__LM_CACHE_TOKENS, t, 1, 1); /* longer than the bound */
    CHECK(!bg__lm_cache_get(c, t, BG__LM_CACHE_TOKENS, t, 1, &v), "an over-long entry is kept");
    for (int k = 0; k < 3; k++) {
        t[0] = k;
        bg__lm_cache_put(c, t, big, t, 1, k);
    }
    bg__lm_cache_stats(c, &n, &hits, &misses);
    t[0] = 0;
    CHECK(n == 2 && !bg__lm_cache_get(c, t, big, t, 1, &v), "token bound: %zu entries", n);
    t[0] = 2;
    CHECK(bg__lm_cache_get(c, t, big, t, 1, &v) && v == 2);
    free(t);
    bg__lm_cache_destroy(c);

    /* 5. threads */
    CHECK(bg__lm_cache_create(64, &c, &err) == BG_OK, "%s", err.msg);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, hammer, c) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    bg__lm_cache_stats(c, &n, &hits, &misses);
    CHECK(n <= 64 && hits > 0, "%zu entries, %llu hits", n, (unsigned long long)hits);
    printf("threads: %zu entries, %llu hits, %llu misses\n", n, (unsigned long long)hits,
           (unsigned long long)misses);
    bg__lm_cache_destroy(c);
    CHECK_DONE("test_lm_cache");
}
