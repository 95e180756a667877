/*
 * fuzz_fleet.h — what fuzz_fleet_entry and fuzz_fleet_snapshot share: a
 * fleet (bg_fleet_create, no thread started, no Redis) attached to a real
 * engine on a data directory, with the policy set of fuzz_guards.h, so
 * that what Redis would hand the reader goes down the real decode, check,
 * apply and store path (daemon/fleet/fleet_priv.h's inbox functions).
 *
 * ff_open makes the engine and the fleet on ff.data (replaying what is
 * there: the applied-id set is rebuilt from the log); ff_close destroys
 * both; ff_wipe empties the data directory between inputs.
 */
#ifndef BG_FUZZ_FLEET_H
#define BG_FUZZ_FLEET_H

#include <dirent.h>
#include <sys/stat.h>

#include "common/bg_assert.h"
#include "engine/engine.h"
#include "fleet/fleet_priv.h"
#include "fuzz_guards.h"
#include "fuzz_util.h"

static struct {
    bg_policy_store *store;
    char data[600];
    bg_fleet *fleet;
    bg_engine *engine;
} ff;

static void ff_setup(const char *tag)
{
    if (ff.store)
        return;
    fz_quiet_logs();
    const char *dir = fz_tmpdir(tag);
    ff.store = fz_guards(dir);
    snprintf(ff.data, sizeof ff.data, "%s/data", dir);
    if (mkdir(ff.data, 0700) != 0)
        fz_die("mkdir %s: %s", ff.data, strerror(errno));
}

static void ff_wipe(void)
{
    DIR *d = opendir(ff.data);
    if (!d)
        fz_die("opendir %s: %s", ff.data, strerror(errno));
    struct dirent *de;
    char path[1000];
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", ff.data, de->d_name);
            unlink(path);
        }
    closedir(d);
}

static void ff_open(void)
{
    bg_fleet_opts fo = {.url = "redis://127.0.0.1:1/fuzz", .data_dir = ff.data};
    bg_err err;
    bg_err_clear(&err);
    if (bg_fleet_create(&fo, &ff.fleet, &err) != BG_OK)
        fz_die("bg_fleet_create: %s", err.msg);
    bg_engine_opts eo = {.max_sessions = 64,
                         .max_obs_per_session = 1000,
                         .data_dir = ff.data,
                         .fleet = bg_fleet_hooks(ff.fleet)};
    if (bg_engine_create(&eo, &ff.engine, &err) != BG_OK)
        fz_die("bg_engine_create: %s", err.msg);
    bg__fleet_attach(ff.fleet, ff.engine, ff.store);
}

static void ff_close(void)
{
    bg_engine_destroy(ff.engine); /* holds the fleet's hooks */
    bg_fleet_destroy(ff.fleet);
    ff.fleet = NULL;
    ff.engine = NULL;
}

static uint64_t ff_applied(void)
{
    bg_fleet_lag l;
    bg_fleet_lag_get(ff.fleet, &l);
    return l.applied;
}

#endif
