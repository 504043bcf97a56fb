/* engine_internal.h -- what loopforge's own front-ends (the server, the
 * CLI) need from the engine beyond the public API. Not installed. */
#ifndef LF_ENGINE_INTERNAL_H
#define LF_ENGINE_INTERNAL_H

#include "../loopforge.h"
#include "../rules/rules.h"

/* Runs the current generation's routes over an inbound event. */
void lf_engine_route(lf_engine *e, const lf_event *ev, lf_route_result *out);
/* The current generation described as JSON (lf_rules_json); caller frees. */
char *lf_engine_policies_json(lf_engine *e);

#endif
