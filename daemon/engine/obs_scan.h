/*
 * obs_scan.h — the observation log's files, read record by record
 * (engine-internal; the format is obs_store.h's).
 *
 * One place knows the bytes on disk: which files make the log and in what
 * order (bg__obs_files_list), and how a file's records are read and checked
 * (bg__obs_scan). The daemon's start (obs_store.c) and the offline tools
 * (store_tool.c: `bayesguard store verify | repair`) both read through it,
 * so there is no second copy of the format.
 *
 * Scanning streams: a window of BG_OBS_SCAN_WINDOW bytes plus the largest
 * record met (at most BG_OBS_RECORD_MAX), never the whole file.
 *
 * A problem is a record that cannot be read: a length past the end of the
 * file or above BG_OBS_RECORD_MAX, a CRC that does not match, a header cut
 * short, or a payload the observation decoder refuses. It is a torn tail
 * (a write cut by a crash, nothing acknowledged in it) only in the last
 * segment, and only when the bad record reaches the end of the file (its
 * length runs to or past EOF) or everything from it to EOF is zero bytes.
 * Anything else is corruption.
 *
 * Threads: pure functions over files; any thread. Ownership: every
 * callback argument is borrowed for the call.
 */
#ifndef BG_ENGINE_OBS_SCAN_H
#define BG_ENGINE_OBS_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG_OBS_SCAN_WINDOW (1u << 20)

/* One file of the log, in replay order. */
typedef struct bg__obs_file {
    char *path;   /* dir/name */
    char *name;   /* file name */
    uint64_t seq; /* segment number (legacy observations.bglog: 0); snapshot: first
                     segment NOT covered */
    int snapshot; /* a snapshot (BG_OBS_SNAP_MAGIC) rather than a segment */
} bg__obs_file;

typedef struct bg__obs_files {
    bg__obs_file *v; /* the newest snapshot first (if any), then the segments it does
                        not cover, by seq */
    size_t n;
    /* files superseded by the snapshot (older snapshots, covered segments,
     * temp files): left over by a crash during compaction; the store deletes
     * them at open, verify lists them */
    bg__obs_file *stale;
    size_t n_stale;
} bg__obs_files;

/* new: bg__obs_files_free. Lists dir's log files. A missing dir is an
 * error; an empty one gives n == 0. */
int bg__obs_files_list(const char *dir, bg__obs_files *out, bg_err *err);
void bg__obs_files_free(bg__obs_files *f);

/* The path of segment seq (new, free()), snapshot (new, free()). */
char *bg__obs_segment_path(const char *dir, uint64_t seq);
char *bg__obs_snapshot_path(const char *dir, uint64_t covers_below);

typedef struct bg__obs_problem {
    const char *path;
    uint64_t offset; /* where the bad record (or header) starts */
    uint64_t bytes;  /* how many bytes from there were not read as records */
    int torn_tail;   /* a torn write at the end of the last segment (tolerated) */
    char what[160];
} bg__obs_problem;

/* A record: payload (borrowed), its length, and its offset in the file.
 * Non-BG_OK stops the scan with that code. */
typedef int (*bg__obs_record_cb)(void *ctx, const uint8_t *payload, size_t len, uint64_t offset,
                                 bg_err *err);
/* A problem. Non-BG_OK stops the scan with that code. */
typedef int (*bg__obs_problem_cb)(void *ctx, const bg__obs_problem *p, bg_err *err);

typedef struct bg__obs_scan_opts {
    int last;   /* the file is the last segment: a torn tail is tolerated */
    int resync; /* after a problem, look for the next record (CRC-valid and
                   decodable) and go on (verify, repair); else stop at it */
} bg__obs_scan_opts;

typedef struct bg__obs_scan_result {
    uint64_t records;
    uint64_t good_end; /* offset after the last record before the first problem */
    uint64_t size;
    int problems; /* every problem, torn tail included */
    int corrupt;  /* problems that are not a torn tail */
} bg__obs_scan_result;

/* Scan one file: check its magic, then every record in order. Problems go
 * to pcb (may be NULL: the first corrupt one becomes a BG_EIO naming the
 * file and offset). Returns BG_OK when the scan ran to the end or to a
 * problem without resync; the caller reads res. */
int bg__obs_scan(const bg__obs_file *f, const bg__obs_scan_opts *o, bg__obs_record_cb rcb,
                 bg__obs_problem_cb pcb, void *ctx, bg__obs_scan_result *res, bg_err *err);

/* CRC-32 (IEEE, zlib's) of a payload: the record checksum (declared in
 * obs_store.h with the format). Record framing: header of 8 bytes into hdr for payload p of n
 * bytes. */
void bg__obs_frame(uint8_t hdr[8], const uint8_t *p, size_t n);

/* fsync the directory (after a create, rename or unlink in it). */
int bg__obs_dir_sync(const char *dir, bg_err *err);

#endif
