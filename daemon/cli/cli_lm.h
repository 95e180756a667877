/*
 * cli_lm.h — `bayesguard lm …`: generate, logits, score, bench on a
 * llama2.c checkpoint (lib/nn). argv[0] is "lm". Returns the exit code:
 * 0 ok, 1 runtime failure (model cannot load, backend unavailable), 2 usage
 * (bad flag, bad number, token id out of range). Output on stdout, errors
 * on stderr. Main thread only.
 */
#ifndef BG_CLI_LM_H
#define BG_CLI_LM_H

int bg_cli_lm_main(int argc, char **argv);
/* `bayesguard lm gfn …` (cli_lm_gfn.c); argv[0] is "gfn". Same exit codes. */
int bg_cli_lm_gfn_main(int argc, char **argv);

#endif
