/*
 * escalation_priv.h — what the files of daemon/escalation share; nothing
 * outside the folder includes it.
 *
 * Files, each calling only the ones below it:
 *   escalation.c       the table: open, resolve, expire, events, stats
 *   escalation_file.c  the durable file: replay, append, rewrite
 *   escalation_rec.c   a record: copy, free, JSON in and out, state names
 */
#ifndef BG_ESCALATION_PRIV_H
#define BG_ESCALATION_PRIV_H

#include <jansson.h>

#include "escalation/escalation.h"

/* ---- escalation_rec.c */
/* r as one JSON object (new reference; NULL on out of memory). */
json_t *bg__esc_rec_to_json(const bg_escalation_rec *r);
/* A new record from a JSON object; NULL (why in err) when it is not one. */
bg_escalation_rec *bg__esc_rec_from_json(const json_t *o, bg_err *err);
/* A deep copy of r with every string cut at max bytes (NULL on out of
 * memory); bg_escalation_rec_copy is this with no cut. */
bg_escalation_rec *bg__esc_rec_copy_cut(const bg_escalation_rec *r, size_t max);
/* A copy of s cut at max bytes on a UTF-8 boundary ("" for NULL); NULL on
 * out of memory. */
char *bg__esc_strndup(const char *s, size_t max);

/* ---- escalation_file.c */
typedef struct bg__esc_file {
    int fd;     /* -1: memory only */
    char *path; /* <dir>/escalations.log */
    char *dir;
    uint64_t appends; /* records appended since the last rewrite */
} bg__esc_file;

/* Open (create 0600) dir's file and replay it: each whole record is handed
 * to take(arg, rec) (taken: the callee owns it), in file order. A torn tail
 * is cut off; corruption is BG_EIO naming the file and the offset. */
int bg__esc_file_open(const char *dir, bg__esc_file *f,
                      void (*take)(void *arg, bg_escalation_rec *rec), void *arg, bg_err *err);
/* Append r and fdatasync; on failure the file is cut back to where it was. */
int bg__esc_file_append(bg__esc_file *f, const bg_escalation_rec *r, bg_err *err);
/* Replace the file by one holding recs[0..n) (temp, fdatasync, rename,
 * fsync of the directory); appends restarts at 0. */
int bg__esc_file_rewrite(bg__esc_file *f, bg_escalation_rec *const *recs, size_t n, bg_err *err);
void bg__esc_file_close(bg__esc_file *f);

#endif
