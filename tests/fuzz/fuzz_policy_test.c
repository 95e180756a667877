/*
 * fuzz_policy_test.c — the policy unit-test file parser of `bayesguard
 * test` (daemon/cli/cli_test_file.c, cli_test.h): the input is written as
 * a NAME_test.yaml file and read by bg_test_file_parse (libyaml through
 * bg_cfg, every key checked, arguments turned from YAML into JSON, peers,
 * bounds, the cases' names), then freed.
 *
 * Who controls the input: whoever writes the test files beside the
 * policies — in CI that may be any contributor's change, so a file must
 * not crash, hang or leak the tool; it gets a "file:line:col" message.
 *
 * Checks beyond the sanitizers (leaks on every error path included): a
 * parse either succeeds with a file that holds what the format promises,
 * or fails with BG_ECONFIG (BG_ENOMEM aside) and a message that names the
 * file. A parsed file has a policy name, at least one case, unique case
 * names, at least one step per case; each step is observe or expect with
 * a non-empty tool, `arguments` (YAML) that jansson reads back as JSON
 * (`arguments_json` is kept as written), at most 4096 finite features, attributes with a value, a
 * repeat in [1, 1000000], finite bounds, a peer identity that fits its buffer (uid:N when a uid was
 * given); an expect with `error` checks no verdict.
 */
#include <jansson.h>
#include <math.h>

#include "cli/cli_test.h"
#include "common/bg_assert.h"
#include "fuzz_util.h"

static char path[700];

static void setup(void)
{
    fz_quiet_logs();
    snprintf(path, sizeof path, "%s/fuzz_test.yaml", fz_tmpdir("policy_test"));
}

static void check_range(const bg_test_range *r, const char *what)
{
    if (!r->set)
        return;
    BG_ASSERT(r->has_ge || r->has_gt || r->has_le || r->has_lt, "%s: set with no bound", what);
    BG_ASSERT(isfinite(r->ge) && isfinite(r->gt) && isfinite(r->le) && isfinite(r->lt),
              "%s: a bound is not finite", what);
}

static void check_peer(const bg_test_peer *p)
{
    BG_ASSERT(memchr(p->identity, '\0', sizeof p->identity) != NULL, "peer identity unterminated");
    if (p->has_uid) {
        char want[32];
        snprintf(want, sizeof want, "uid:%lu", (unsigned long)p->uid);
        BG_ASSERT(strcmp(p->identity, want) == 0, "peer uid %lu but identity '%s'",
                  (unsigned long)p->uid, p->identity);
    }
}

/* yaml_args: the step gave `arguments` (YAML, turned into JSON by the
 * parser); `arguments_json` is passed on as written (a test may check that
 * the daemon refuses text that is not JSON). */
static void check_step(const bg_test_step *s, int yaml_args)
{
    BG_ASSERT(s->kind == BG_TEST_OBSERVE || s->kind == BG_TEST_EXPECT, "step kind %d", s->kind);
    BG_ASSERT(s->tool != NULL && s->tool[0] != '\0', "a step without a tool was accepted");
    BG_ASSERT(!yaml_args || s->args != NULL, "arguments given but none kept");
    if (s->args != NULL && yaml_args) {
        json_error_t je;
        json_t *j = json_loads(s->args, JSON_DECODE_ANY, &je);
        BG_ASSERT(j != NULL, "arguments '%.80s' are not JSON: %s", s->args, je.text);
        json_decref(j);
    }
    BG_ASSERT(s->n_features <= 4096, "%zu features", s->n_features);
    for (size_t i = 0; i < s->n_features; i++)
        BG_ASSERT(isfinite(s->features[i]), "feature %zu is not finite", i);
    for (size_t i = 0; i < s->n_attrs; i++)
        BG_ASSERT(s->attrs[i].key != NULL && s->attrs[i].value != NULL, "attribute %zu unset", i);
    BG_ASSERT(s->error == NULL || s->error[0] != '\0', "an empty error text was accepted");
    check_peer(&s->peer);
    if (s->kind == BG_TEST_OBSERVE) {
        BG_ASSERT(s->repeat >= 1 && s->repeat <= 1000000L, "repeat %ld", s->repeat);
        BG_ASSERT(s->harmed == 0 || s->harmed == 1, "harmed %d", s->harmed);
        BG_ASSERT(!s->has_value || isfinite(s->value), "value not finite");
        return;
    }
    const bg_test_range *rs[] = {&s->harm_bound,   &s->posterior_predictive, &s->plausible_set_size,
                                 &s->observations, &s->cautious_posterior,   &s->cautious_harm};
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
        check_range(rs[i], "expect bound");
    if (s->error != NULL)
        BG_ASSERT(!s->has_decision && !s->harm_bound.set && !s->has_bound_kind && !s->has_shadow,
                  "an expect with an error also checks a verdict");
}

/* Whether step k of case i wrote `arguments` (read off the document). */
static int yaml_args_of(const bg_test_file *f, size_t i, size_t k)
{
    const bg_cfg_node *c = bg_cfg_item(bg_cfg_get(bg_cfg_doc_root(f->doc, 0), "cases"), i);
    const bg_cfg_node *step = bg_cfg_item(bg_cfg_get(c, "steps"), k);
    return bg_cfg_get(bg_cfg_value(step, 0), "arguments") != NULL;
}

static void check_file(const bg_test_file *f)
{
    BG_ASSERT(f->policy != NULL, "parsed without a policy");
    BG_ASSERT(f->n_cases >= 1 && f->cases != NULL, "parsed with %zu cases", f->n_cases);
    for (size_t i = 0; i < f->n_cases; i++) {
        const bg_test_case *c = &f->cases[i];
        BG_ASSERT(c->name != NULL && c->n_steps >= 1, "case %zu: %zu steps", i, c->n_steps);
        for (size_t j = 0; j < i; j++)
            BG_ASSERT(strcmp(f->cases[j].name, c->name) != 0, "case name '%s' twice", c->name);
        for (size_t k = 0; k < c->n_steps; k++)
            check_step(&c->steps[k], yaml_args_of(f, i, k));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (fz_write(fz_tmpdir("policy_test"), "fuzz_test.yaml", data, size) != 0)
        fz_die("write %s: %s", path, strerror(errno));
    bg_test_file f;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_test_file_parse(path, &f, &err);
    if (rc == BG_OK)
        check_file(&f);
    else
        BG_ASSERT((rc == BG_ECONFIG || rc == BG_ENOMEM) && strstr(err.msg, path) != NULL,
                  "refused with %s and a message that does not name the file: %s", bg_err_name(rc),
                  err.msg);
    bg_test_file_free(&f);
    return 0;
}
