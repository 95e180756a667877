/*
 * bg_version.h — what build this is: the release version, the git revision
 * the build was configured from, and the plugin ABI it speaks. One source
 * for `bayesguard --version` and `bayesguardd --version`, so the two
 * binaries of one build always print the same three values.
 *
 * The version comes from CMake's project(VERSION), the revision from
 * `git describe --always --dirty` run at configure time ("unknown" when the
 * source has no .git or git is missing), the ABI from
 * include/bayesguard/plugin.h. All three are compile-time constants.
 * Threads: any; no state.
 */
#ifndef BG_VERSION_H
#define BG_VERSION_H

#include <stdio.h>

const char *bg_version(void);          /* "0.1.0" */
const char *bg_version_revision(void); /* "1ed19ac-dirty", or "unknown" */

/* Print what `--version` prints for program `prog`: three lines
 *   PROG VERSION
 *   revision REVISION
 *   plugin ABI MAJOR.MINOR (DATE)
 * or with json one JSON object on one line:
 *   {"program": "...", "version": "...", "revision": "...",
 *    "plugin_abi": {"major": 1, "minor": 2, "date": "..."}} */
void bg_version_print(FILE *f, const char *prog, int json);

#endif
