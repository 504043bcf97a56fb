/* rules.h -- the Lua host: loads a policies directory into a sandboxed
 * lua_State and compiles what it finds.
 *
 * This is the only layer that touches the Lua C API. A loaded directory
 * is a "policy set generation": its id is the sha256 (hex) of the
 * contents of every loaded file, in load order (sorted by path). */
#ifndef LF_RULES_H
#define LF_RULES_H

#include <stddef.h>
#include "../core/buf.h"
#include "../core/workflow.h"

typedef struct lf_rules lf_rules;

/* Loads every *.lua file under DIR/workflows/ (sorted by path). On any
 * problem returns NULL and appends every problem found to `errors`, one
 * per line, as "file:line: message". A broken file never yields a
 * partial rule set. */
lf_rules *lf_rules_load(const char *dir, lf_buf *errors);
void lf_rules_free(lf_rules *r);

/* Workflow by name; NULL name means the default workflow "loopforge".
 * Returns NULL if there is no such workflow. */
const lf_workflow *lf_rules_workflow(const lf_rules *r, const char *name);
int lf_rules_nworkflows(const lf_rules *r);
const lf_workflow *lf_rules_workflow_at(const lf_rules *r, int i);

/* 64 lowercase hex characters. */
const char *lf_rules_generation(const lf_rules *r);
/* Number of files loaded, and their paths in load order. */
int lf_rules_nfiles(const lf_rules *r);
const char *lf_rules_file_at(const lf_rules *r, int i);

#endif
