/*
 * plugin_metrics.c — the counters plugins add to through host->metric_add,
 * read by Status/metrics via bg_plugin_host_metrics().
 * A small array under a mutex: plugins add a handful of named counters, so
 * a linear search is cheaper than a hash table's bookkeeping.
 * Threads: any. Ownership: the table owns its array.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin_priv.h"

void bg__metric_table_init(bg__metric_table *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
}

void bg__metric_table_close(bg__metric_table *t)
{
    free(t->m);
    pthread_mutex_destroy(&t->mu);
}

void bg__metric_table_add(bg__metric_table *t, const char *full_name, double delta)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->m[i].name, full_name) == 0) {
            t->m[i].value += delta;
            pthread_mutex_unlock(&t->mu);
            return;
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        bg__metric *m = realloc(t->m, cap * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&t->mu);
            return;
        }
        t->m = m;
        t->cap = cap;
    }
    bg__metric *e = &t->m[t->n++];
    memset(e->name, 0, sizeof e->name);
    strncpy(e->name, full_name, sizeof e->name - 1);
    e->value = delta;
    pthread_mutex_unlock(&t->mu);
}

void bg__metric_table_each(bg__metric_table *t, bg_plugin_metric_cb cb, void *ctx)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++)
        cb(ctx, t->m[i].name, t->m[i].value);
    pthread_mutex_unlock(&t->mu);
}
