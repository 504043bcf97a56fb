/* import.c -- `loopforge import FILE...`: LoopForge's records (as its
 * LoopRecord.to_dict() / model_dump_json() writes them: one JSON object,
 * an array of them, or one per line) into the store, each with its whole
 * history, original ids and timestamps, every entry marked as imported
 * (lf_engine_import). One line per record: what was imported, or why it
 * was refused. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "../core/buf.h"
#include "../core/mem.h"

typedef struct import_call {
    lf_cli *c;
    bool done, dry_run;
    int rc;                         /* the first failure's exit code */
    size_t ok, refused;
    /* the file's records, for lf_engine_import_all: */
    char *text;                     /* the file (its lines cut at "\n") */
    cJSON *all;                     /* the array, or NULL */
    const cJSON *item;              /* the array's next record */
    char *line;                     /* the next line, NULL at the end */
    bool whole;                     /* the file is one record, not yet given */
    char *printed;                  /* the record `next` last gave from the array */
} import_call;

static void on_imported(const lf_result *r, void *arg) {
    import_call *a = arg;
    if (r->success) {
        a->ok++;
        printf("%s %s (%s, state %s)\n", a->dry_run ? "would import" : "imported",
               lf_record_id(r->record), lf_record_ref(r->record),
               lf_record_state(r->record));
        return;
    }
    a->refused++;
    fprintf(stderr, "refused: %s\n", r->error ? r->error : lf_code_name(r->code));
    if (!a->rc) a->rc = lf_cli_exit_code(r->code);
}

static void on_all_imported(void *arg) { ((import_call *)arg)->done = true; }

/* The file's next record: the whole file when it is one object, the
 * array's next item, else its next non-blank line. */
static const char *next_record(void *arg) {
    import_call *a = arg;
    cJSON_free(a->printed);
    a->printed = NULL;
    if (a->all) {
        if (!a->item) return NULL;
        a->printed = lf_xptr(cJSON_PrintUnformatted(a->item));
        a->item = a->item->next;
        return a->printed;
    }
    if (a->whole) {
        a->whole = false;
        a->line = NULL;
        return a->text;
    }
    while (a->line && *a->line) {
        char *line = a->line, *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        a->line = nl ? nl + 1 : NULL;
        if (line[strspn(line, " \t\r")]) return line;
    }
    return NULL;
}

/* Each record of one file: an object, an array of objects, or NDJSON. */
static int import_file(lf_cli *c, lf_engine *e, import_call *a, const char *path) {
    size_t len;
    a->text = lf_read_file(path, &len);
    if (!a->text) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: cannot read it", path);
        return lf_cli_fail(c, LF_INVALID_REQUEST, msg);
    }
    /* One JSON value filling the file, else one per line. */
    const char *end = NULL;
    cJSON *all = cJSON_ParseWithLengthOpts(a->text, len, &end, 0);
    if (all && end && end[strspn(end, " \t\r\n")] != '\0') {
        cJSON_Delete(all);
        all = NULL;
    }
    a->all = cJSON_IsArray(all) ? all : NULL;
    a->item = a->all ? all->child : NULL;
    a->line = a->text;
    a->whole = cJSON_IsObject(all);
    a->done = false;
    lf_engine_import_all(e, next_record, lf_cli_actor(c), a->dry_run, on_imported,
                         on_all_imported, a);
    int rc = lf_cli_wait(c, &a->done);
    cJSON_Delete(all);
    cJSON_free(a->printed);
    a->printed = NULL;
    free(a->text);
    return rc;
}

static int run_import(lf_cli *c) {
    if (c->args.npos == 0) return lf_cli_usage(c, "name the files to import");
    int rc = 0;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    import_call a = {.c = c, .dry_run = lf_args_has(&c->args, "dry-run")};
    for (size_t i = 0; i < c->args.npos && !rc; i++)
        rc = import_file(c, e, &a, c->args.pos[i]);
    if (rc) return rc;
    fprintf(stderr, "%s %zu record(s), %zu refused\n",
            a.dry_run ? "import --dry-run: would import" : "import:", a.ok, a.refused);
    return a.rc;
}

static const lf_optspec import_opts[] = {
    {"dry-run", false}, {"actor", true}, {NULL, false}};

const lf_command lf_cmd_import = {
    "import",
    "import LoopForge's records with their whole history",
    "Usage: loopforge import FILE... [--dry-run] [--actor A]\n\n"
    "Reads records as LoopForge writes them (LoopRecord.to_dict() or\n"
    "model_dump_json(): one JSON object, an array, or one per line) and\n"
    "creates each with its id, history and original timestamps. Every\n"
    "imported entry says so: actor \"import:A\", decision {\"policy\":\"import\"}.\n"
    "A record whose id or ref exists, or whose history the workflow does not\n"
    "allow, is refused (one line each on stderr; exit 6 or 2 for the first);\n"
    "the others are imported. --dry-run checks everything and writes nothing.\n\n"
    "  --dry-run            say what would be imported\n"
    "  --actor A            who imports (default: $LOOPFORGE_ACTOR, else cli:$USER)\n",
    import_opts,
    run_import,
    false};
