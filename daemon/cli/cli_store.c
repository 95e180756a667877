/*
 * cli_store.c — `bayesguard store verify DIR` and `bayesguard store repair
 * DIR`: the observation log of a --data-dir, offline (no daemon may use
 * DIR meanwhile). The work is the engine's (engine/store_tool.h); this file
 * prints it: one line per problem, "FILE:OFFSET: what (N bytes)", then a
 * summary; --json prints one object instead. Main thread only.
 */
#include "cli/cli_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/store_tool.h"

typedef struct out_ctx {
    int json, n;
} out_ctx;

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void on_problem(void *ctx, const bg_store_problem *p)
{
    out_ctx *o = ctx;
    if (!o->json) {
        printf("%s:%" PRIu64 ": %s (%" PRIu64 " bytes)%s\n", p->file, p->offset, p->what, p->bytes,
               p->torn_tail ? " [torn tail of the last segment: cut at the next start]" : "");
        return;
    }
    printf("%s{\"file\":", o->n++ ? "," : "");
    json_str(p->file);
    printf(",\"offset\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"torn_tail\":%s,\"what\":", p->offset,
           p->bytes, p->torn_tail ? "true" : "false");
    json_str(p->what);
    putchar('}');
}

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: bayesguard store verify DIR [--json]\n"
               "       bayesguard store repair DIR [--json] [--fleet-reset]\n\n"
               "verify: check every record of the observation log in DIR (a --data-dir);\n"
               "        exit 0 clean, 1 corrupt (each problem printed as FILE:OFFSET).\n"
               "repair: keep each damaged file as FILE.corrupt and replace it by its\n"
               "        readable records (those before the damage and after it); prints\n"
               "        what was dropped. Stop the daemon first. docs/STORE.md.\n"
               "        On a fleet sidecar's DIR (fleet.node, fleet.order) a repair that\n"
               "        drops records is refused: it renumbers them, and fleet ids are\n"
               "        record numbers. --fleet-reset repairs, then moves the log, the\n"
               "        fleet files and receipt.key into DIR/fleet-reset-<time>/: the\n"
               "        next start is a new node that bootstraps from the fleet.\n"
               "        docs/FLEET.md.\n");
    return code;
}

int bg_cli_store_main(int argc, char **argv)
{
    const char *verb = NULL, *dir = NULL;
    int json = 0, fleet_reset = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout, 0);
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--fleet-reset") == 0)
            fleet_reset = 1;
        else if (!verb)
            verb = argv[i];
        else if (!dir)
            dir = argv[i];
        else
            return usage(stderr, 2);
    }
    int repair = verb && strcmp(verb, "repair") == 0;
    if (!verb || (!repair && strcmp(verb, "verify") != 0) || !dir) {
        fprintf(stderr, "bayesguard store: expected 'verify DIR' or 'repair DIR'\n");
        return usage(stderr, 2);
    }
    bg_store_report r;
    bg_err err;
    bg_err_clear(&err);
    if (fleet_reset && !repair) {
        fprintf(stderr, "bayesguard store: --fleet-reset goes with repair\n");
        return usage(stderr, 2);
    }
    int fleet = repair && bg_store_is_fleet(dir);
    if (fleet && !fleet_reset) {
        /* Nothing dropped, nothing renumbered: only then without a reset. */
        if (bg_store_verify(dir, NULL, NULL, &r, &err) != BG_OK) {
            fprintf(stderr, "bayesguard store repair: %s\n", err.msg);
            return 2;
        }
        if (r.corrupt) {
            fprintf(stderr,
                    "bayesguard store repair: %s is a fleet sidecar's (fleet.node, fleet.order) "
                    "and its log has %" PRIu64 " damaged region(s): a repair drops them and "
                    "renumbers every later record, which changes their fleet ids (peers would "
                    "apply them again) and breaks fleet.order. Refused. Run `bayesguard store "
                    "repair %s --fleet-reset`: it repairs, then moves the log and the fleet "
                    "identity into %s/fleet-reset-<time>/, and the next start bootstraps as a "
                    "new node from the fleet (docs/FLEET.md)\n",
                    dir, r.corrupt, dir, dir);
            return 2;
        }
    }
    out_ctx o = {json, 0};
    if (json)
        printf("{\"problems\":[");
    int rc = repair ? bg_store_repair(dir, on_problem, &o, &r, &err)
                    : bg_store_verify(dir, on_problem, &o, &r, &err);
    if (rc != BG_OK) {
        if (json)
            printf("],\"error\":"), json_str(err.msg), printf("}\n");
        fprintf(stderr, "bayesguard store %s: %s\n", verb, err.msg);
        return 2;
    }
    char aside[4200] = "";
    if (fleet_reset && bg_store_is_fleet(dir) &&
        bg_store_fleet_reset(dir, aside, sizeof aside, &err) != BG_OK) {
        if (json)
            printf("],\"error\":"), json_str(err.msg), printf("}\n");
        fprintf(stderr, "bayesguard store repair --fleet-reset: %s\n", err.msg);
        return 2;
    }
    if (json) {
        printf("],\"files\":%" PRIu64 ",\"records\":%" PRIu64 ",\"corrupt\":%" PRIu64
               ",\"dropped_bytes\":%" PRIu64 ",\"files_repaired\":%" PRIu64 ",\"clean\":%s",
               r.files, r.records, r.corrupt, r.dropped_bytes, r.files_repaired,
               r.corrupt == 0 || repair ? "true" : "false");
        if (aside[0])
            printf(",\"fleet_reset\":"), json_str(aside);
        printf("}\n");
    } else if (repair) {
        if (aside[0])
            printf("%s: fleet identity reset: the log, fleet.node, fleet.order, fleet.state and "
                   "receipt.key are in %s; the next start is a new node that bootstraps from "
                   "the fleet\n",
                   dir, aside);
        printf("%s: %" PRIu64 " damaged region(s), %" PRIu64 " bytes dropped, %" PRIu64
               " file(s) replaced (originals kept as FILE.corrupt); %" PRIu64
               " readable records kept\n",
               dir, r.corrupt, r.dropped_bytes, r.files_repaired, r.records);
    } else {
        printf("%s: %" PRIu64 " files, %" PRIu64 " records, %" PRIu64 " corrupt region(s)%s\n", dir,
               r.files, r.records, r.corrupt,
               r.corrupt ? ": run `bayesguard store repair DIR`" : "");
    }
    return repair || r.corrupt == 0 ? 0 : 1;
}
