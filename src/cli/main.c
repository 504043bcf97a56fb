/* main.c -- the loopforge command line: global options, the command
 * table, help and version, then dispatch to the command's module.
 *
 *   loopforge [GLOBAL OPTIONS] COMMAND [ARGS] [GLOBAL OPTIONS]
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <event2/event.h>
#include "cli.h"
#include "../engine/engine_internal.h"

#ifndef LF_DATADIR
#define LF_DATADIR "/usr/local/share/loopforge"
#endif

static const lf_command *const commands[] = {&lf_cmd_create,   &lf_cmd_transition,
                                             &lf_cmd_show,     &lf_cmd_list,
                                             &lf_cmd_delete,   &lf_cmd_audit,
                                             &lf_cmd_lint,     &lf_cmd_policies,
                                             &lf_cmd_graph,    &lf_cmd_bench,
                                             &lf_cmd_serve,    &lf_cmd_token,
                                             &lf_cmd_keygen,   &lf_cmd_attest,
                                             &lf_cmd_evidence, &lf_cmd_import,
                                             &lf_cmd_timers,   &lf_cmd_tick,
                                             &lf_cmd_explain,  &lf_cmd_replay,
                                             &lf_cmd_ack,      NULL};

static const lf_optspec global_opts[] = {
    {"store", true}, {"policies", true}, {"signing-key", true}, {"json", false},
    {"help", false}, {"version", false}, {NULL, false}};

static const lf_command *find_command(const char *name) {
    for (int i = 0; commands[i]; i++)
        if (strcmp(commands[i]->name, name) == 0) return commands[i];
    return NULL;
}

static void main_help(FILE *f) {
    fputs("Usage: loopforge [OPTIONS] COMMAND [ARGS]\n\n"
          "A governed state machine for the software lifecycle\n"
          "(issue -> PR -> CI -> review -> merge -> close).\n\n"
          "Commands:\n",
          f);
    for (int i = 0; commands[i]; i++)
        fprintf(f, "  %-11s %s\n", commands[i]->name, commands[i]->summary);
    fputs("  help [CMD]  this help, or a command's\n\n", f);
    fputs(LF_GLOBAL_HELP, f);
    fputs("  --version        print the version\n\n"
          "Exit codes: 0 ok, 2 usage or invalid request, 3 not found,\n"
          "4 invalid transition, 5 denied, 6 conflict or duplicate ref,\n"
          "7 store unavailable, 8 audit verification failed.\n\n"
          "Run 'loopforge COMMAND --help' for a command's options.\n",
          f);
}

static void command_help(const lf_command *cmd) {
    fputs(cmd->help, stdout);
    fputc('\n', stdout);
    fputs(LF_GLOBAL_HELP, stdout);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* --policies, else $LOOPFORGE_POLICIES, else ./policies, falling back to
 * the installed copy when run outside a source tree. */
static const char *resolve_policies(const lf_args *a) {
    const char *p = lf_args_get(a, "policies");
    if (p) return p;
    if ((p = getenv("LOOPFORGE_POLICIES")) && *p) return p;
    if (!is_dir("./policies") && is_dir(LF_DATADIR "/policies"))
        return LF_DATADIR "/policies";
    return "./policies";
}

/* `loopforge help [CMD]` */
static int help_command(lf_cli *c) {
    if (c->args.npos == 0) {
        main_help(stdout);
        return LF_EXIT_OK;
    }
    const lf_command *cmd = find_command(c->args.pos[0]);
    if (!cmd) return lf_cli_usage(c, "unknown command '%s'", c->args.pos[0]);
    command_help(cmd);
    return LF_EXIT_OK;
}

static int run(lf_cli *c, int argc, char **argv) {
    char err[256];
    int at = lf_args_find_command(argc, argv, global_opts);
    const char *word = at ? argv[at] : NULL;
    bool help_word = word && strcmp(word, "help") == 0;
    if (word && !help_word && !(c->cmd = find_command(word))) {
        lf_cli_usage(c, "unknown command '%s'", word);
        return LF_EXIT_USAGE;
    }
    if (lf_args_parse(argc, argv, at, global_opts, c->cmd ? c->cmd->opts : NULL, &c->args,
                      err, sizeof(err)) != 0)
        return lf_cli_usage(c, "%s", err);
    if (lf_args_has(&c->args, "help")) {
        if (c->cmd) command_help(c->cmd);
        else main_help(stdout);
        return LF_EXIT_OK;
    }
    if (lf_args_has(&c->args, "version")) {
        printf("loopforge %s\n", lf_version());
        return LF_EXIT_OK;
    }
    if (help_word) return help_command(c);
    if (!c->cmd) {
        main_help(stderr);
        return LF_EXIT_USAGE;
    }
    c->store = lf_args_get(&c->args, "store");
    c->policies = resolve_policies(&c->args);
    /* The engine reads an empty string as "use the default", which would
     * quietly put a typo'd `--store "$UNSET"` on the default journal. */
    if (c->store && !*c->store) return lf_cli_usage(c, "--store must not be empty");
    if (!*c->policies) return lf_cli_usage(c, "--policies must not be empty");
    c->json = lf_args_has(&c->args, "json");
    c->signing_key = lf_args_get(&c->args, "signing-key");
    if (c->signing_key && !*c->signing_key)
        return lf_cli_usage(c, "--signing-key must not be empty");
    return c->cmd->run(c);
}

int main(int argc, char **argv) {
    /* Blocks of 1 MiB and more come from mmap, whatever was freed before:
     * glibc's threshold otherwise rises to the largest block freed (up to
     * 32 MiB), and an array of a million records' index entries or log
     * lines that doubles is then copied, holding the loop (a line array
     * of 2 million: 90 ms); a mapped one grows by mremap, not a copy. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    /* And the heap keeps 4 MiB spare at its top, taken and kept in one
     * piece: setting the threshold above also fixes glibc's trim at
     * 128 KiB, and serve's replies in flight (64 connections' worth,
     * ~16 KiB each) were given back to the kernel and faulted in again,
     * ~0.5 page faults and 0.06 brk a request on Redis (0.03 and 0.001
     * with the pad: serve's CPU 45 -> 41 us a request, bench-http.sh). */
    mallopt(M_TOP_PAD, 4 << 20);
    lf_cli c;
    memset(&c, 0, sizeof(c));
    int rc = run(&c, argc, argv);
    /* What the request set off (hooks' follow-ups, an escalation, a
     * parent's move) finishes before the engine goes: on an asynchronous
     * store it is still in flight when the reply is printed. */
    while (c.engine && c.base && !lf_engine_settled(c.engine) &&
           event_base_loop(c.base, EVLOOP_ONCE) == 0)
        ;
    if (c.engine) lf_engine_free(c.engine);
    if (c.base) event_base_free(c.base);
    lf_args_free(&c.args);
    if (fflush(stdout) != 0 && rc == LF_EXIT_OK) {
        perror("loopforge: stdout");
        rc = LF_EXIT_FAILURE;
    }
    return rc;
}
