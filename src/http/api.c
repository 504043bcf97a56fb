/* api.c -- the /v1 JSON API and the probes: each handler turns a request
 * into one engine call and its result into a reply (status from the
 * result code, body from lf_result_json or the record).
 *
 * Bodies are validated strictly (types, unknown fields) before the engine
 * sees them: a typo in a field name is a 400 that says so, not a request
 * that quietly does something else. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "internal.h"
#include "../core/json.h"
#include "../engine/engine_internal.h"

/* ---- helpers ----------------------------------------------------------- */

/* A body field of the wrong type: reply 400 and say which. */
static bool bad_field(lf_req *r, const cJSON *f, const char *want) {
    lf_reply_error(r, 400, "invalid_request", "field '%s' must be %s", f->string, want);
    return false;
}

/* The compact text of an object field (labels, metadata); NULL if absent. */
static bool object_text(lf_req *r, const cJSON *f, char **out) {
    if (cJSON_IsNull(f)) return true;
    if (!cJSON_IsObject(f)) return bad_field(r, f, "an object");
    free(*out);                 /* (a field given twice is refused before this) */
    *out = lf_xptr(cJSON_PrintUnformatted(f));
    return true;
}

static bool string_field(lf_req *r, const cJSON *f, const char **out, bool nullable) {
    if (nullable && cJSON_IsNull(f)) return true;
    if (!cJSON_IsString(f))
        return bad_field(r, f, nullable ? "a string or null" : "a string");
    *out = f->valuestring;
    return true;
}

/* `actor` in a body names who acts only when there are no tokens: with
 * tokens, the token's name is the actor and cannot be claimed otherwise. */
static bool actor_field(lf_req *r, const cJSON *f) {
    const char *a;
    if (!string_field(r, f, &a, false)) return false;
    if (r->srv->tokens) {
        lf_reply_error(r, 400, "invalid_request",
                       "field 'actor' is not accepted with "
                       "tokens: the token's name (%s) is the actor",
                       r->actor);
        return false;
    }
    if (!*a || strlen(a) >= sizeof r->actor)
        return bad_field(r, f, "a string of 1-79 bytes");
    lf_req_str(r->actor, sizeof r->actor, a);
    return true;
}

/* `roles` (a list of names) says what the actor may do only when there
 * are no tokens (loopback use); with tokens they come from the tokens file.
 * The entry records which it was. */
static bool roles_field(lf_req *r, const cJSON *f, lf_buf *out) {
    const cJSON *x;
    if (r->srv->tokens) {
        lf_reply_error(
            r, 400, "invalid_request",
            "field 'roles' is not accepted with tokens: the token's roles (%s) "
            "are the actor's",
            r->roles[0] ? r->roles : "none");
        return false;
    }
    if (!cJSON_IsArray(f)) return bad_field(r, f, "a list of role names");
    cJSON_ArrayForEach(x, f) {
        if (!cJSON_IsString(x) || !x->valuestring[0] || strchr(x->valuestring, ','))
            return bad_field(r, f, "a list of role names");
        if (out->len) lf_buf_putc(out, ',');
        lf_buf_puts(out, x->valuestring);
    }
    return true;
}

/* `override`: {"reason": "...", "co_signer": NAME} (no tokens) or
 * {"reason": "...", "co_signer_token": TOKEN} (tokens: another token that
 * holds the breakglass role signs with its name). */
static bool override_field(lf_req *r, const cJSON *f, lf_transition_req *req) {
    const cJSON *x;
    if (!cJSON_IsObject(f)) return bad_field(r, f, "an object {\"reason\": \"...\"}");
    cJSON_ArrayForEach(x, f) {
        const char *k = x->string;
        if (strcmp(k, "reason") == 0) {
            if (!string_field(r, x, &req->override_reason, false)) return false;
        } else if (strcmp(k, "co_signer") == 0 && !r->srv->tokens) {
            if (!string_field(r, x, &req->co_signer, false)) return false;
        } else if (strcmp(k, "co_signer_token") == 0 && r->srv->tokens) {
            const char *tok, *roles = NULL;
            lf_role role;
            lf_buf h = LF_BUF_INIT;
            if (!string_field(r, x, &tok, false)) return false;
            lf_buf_printf(&h, "Bearer %s", tok);
            req->co_signer = lf_tokens_check(r->srv->tokens, lf_buf_str(&h), &role,
                                             &roles, NULL, NULL);
            lf_buf_free(&h);
            if (!req->co_signer || !lf_roles_have(roles, "breakglass")) {
                lf_reply_error(r, 403, "forbidden",
                               "override.co_signer_token is not a token with the role "
                               "breakglass");
                return false;
            }
        } else {
            lf_reply_error(r, 400, "invalid_request", "unknown field 'override.%s'%s", k,
                           strcmp(k, "co_signer") == 0 ? " (with tokens: co_signer_token)"
                           : strcmp(k, "co_signer_token") == 0
                               ? " (without tokens: co_signer)"
                               : "");
            return false;
        }
    }
    if (!req->override_reason) return bad_field(r, f, "an object with a 'reason'");
    return true;
}

static bool unknown_field(lf_req *r, const cJSON *f) {
    lf_reply_error(r, 400, "invalid_request", "unknown field '%s'", f->string);
    return false;
}

/* ---- probes and metrics ------------------------------------------------ */

void lf_api_healthz(lf_req *r) {
    char body[96];
    snprintf(body, sizeof body, "{\"status\":\"ok\",\"version\":\"%s\"}", lf_version());
    lf_reply_json(r, 200, body);
}

static void readyz_done(const lf_result *res, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_GET);
    /* Any answer from the store but "unavailable" means it is there. */
    if (res->code == LF_UNAVAILABLE) {
        lf_reply_error(r, 503, "unavailable", "store: %s",
                       res->error ? res->error : "down");
        return;
    }
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_str(&o, "status", "ready");
    lf_jw_str(&o, "generation", lf_engine_generation(r->srv->engine));
    lf_jw_close(&o, '}');
    lf_reply_json(r, 200, b.p);
    lf_buf_free(&b);
}

void lf_api_readyz(lf_req *r) {
    if (r->srv->draining) {
        lf_reply_error(r, 503, "unavailable", "shutting down");
        return;
    }
    if (!lf_engine_generation(r->srv->engine)) {
        lf_reply_error(r, 503, "unavailable", "no policy generation loaded");
        return;
    }
    /* A read of an id that cannot exist: a real round trip to the store. */
    lf_op_begin(r);
    lf_engine_get(r->srv->engine, "loop-0000000000000000", readyz_done, r);
}

void lf_api_metrics(lf_req *r) {
    lf_buf b = LF_BUF_INIT;
    lf_metrics_render(r->srv, &b);
    size_t len = b.len;
    lf_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", lf_buf_steal(&b),
                  len);
}

/* ---- records ----------------------------------------------------------- */

/* ETag: the record's version, which If-Match names (expected_version). */
static void etag(lf_req *r, const lf_record *rec) {
    char v[LF_INT_CHARS + 2];
    size_t n = lf_fmt_int((int64_t)lf_record_version(rec), v + 1);
    v[0] = v[n + 1] = '"';
    v[n + 2] = '\0';
    lf_add_header(r, "ETag", v);
}

/* If-Match: "N" (or N, or W/"N"): the version the caller expects. Returns
 * false after replying 400 to anything else. */
static bool if_match(lf_req *r, uint64_t *version) {
    const char *h = lf_req_header(r, "If-Match");
    *version = 0;
    if (!h) return true;
    const char *p = h;
    if (strncmp(p, "W/", 2) == 0) p += 2;
    bool quoted = *p == '"';
    p += quoted;
    char *end;
    unsigned long long v = *p >= '0' && *p <= '9' ? strtoull(p, &end, 10) : 0;
    if (!v || (quoted && *end++ != '"') || *end) {
        lf_reply_error(r, 400, "invalid_request",
                       "If-Match must name one record version, like \"7\" (the ETag)");
        return false;
    }
    *version = v;
    return true;
}

static void reply_record(lf_req *r, int status, const lf_record *rec) {
    etag(r, rec);
    char *json = lf_record_json_tail(rec, lf_req_history(r));
    lf_reply_take(r, status, "application/json", json, strlen(json));
}

typedef struct create_ctx {
    lf_req *r;
    char *ref;
    char *error;        /* the duplicate_ref message, while we look up */
} create_ctx;

/* 409 duplicate_ref: the engine's message names the existing record; the
 * result carries it whole, so a client can go on with its id. */
static void duplicate_found(const lf_result *found, void *arg) {
    create_ctx *c = arg;
    lf_result res = {.success = false,
                     .code = LF_DUPLICATE_REF,
                     .error = c->error,
                     .record = found->success ? found->record : NULL,
                     .decisions = "[]"};
    lf_op_end(c->r, LF_OP_FIND);
    lf_reply_result(c->r, &res, 200);
    free(c->error);
    free(c->ref);
    free(c);
}

static void created(const lf_result *res, void *arg) {
    create_ctx *c = arg;
    lf_req *r = c->r;
    lf_op_end(r, LF_OP_CREATE);
    if (res->success) {
        char loc[200];
        snprintf(loc, sizeof loc, "/v1/records/%s", lf_record_id(res->record));
        lf_add_header(r, "Location", loc);
        /* A replayed create answers like the first one, minus the 201. */
        if (res->duplicate) lf_add_header(r, "Idempotent-Replayed", "true");
        reply_record(r, res->duplicate ? 200 : 201, res->record);
    } else if (res->code == LF_DUPLICATE_REF) {
        c->error = lf_xstrdup(res->error ? res->error : "");
        lf_op_begin(r);
        lf_engine_find_by_ref(r->srv->engine, c->ref, duplicate_found, c);
        return;
    } else {
        lf_reply_result(r, res, 201);
    }
    free(c->ref);
    free(c);
}

/* The Idempotency-Key header, the conventional alternative to the body's
 * idempotency_key: used when the body has none; both, differing, is 400.
 * False after replying. */
static bool idempotency_header(lf_req *r, const char **key) {
    const char *h = lf_req_header(r, "Idempotency-Key");
    if (!h) return true;
    if (!*h) {
        lf_reply_error(r, 400, "invalid_request", "header Idempotency-Key is empty");
        return false;
    }
    if (*key && strcmp(*key, h) != 0) {
        lf_reply_error(r, 400, "invalid_request",
                       "header Idempotency-Key and field "
                       "'idempotency_key' differ");
        return false;
    }
    *key = h;
    return true;
}

/* Reads the create body into req (pointing into j); false after replying. */
static bool create_fields(lf_req *r, const cJSON *j, lf_create_req *req, char **labels,
                          char **meta) {
    const cJSON *f;
    cJSON_ArrayForEach(f, j) {
        const char *k = f->string;
        bool ok = true;
        if (strcmp(k, "ref") == 0) ok = string_field(r, f, &req->ref, false);
        else if (strcmp(k, "repo") == 0) ok = string_field(r, f, &req->repo, true);
        else if (strcmp(k, "parent") == 0) ok = string_field(r, f, &req->parent, true);
        else if (strcmp(k, "workflow") == 0)
            ok = string_field(r, f, &req->workflow, false);
        else if (strcmp(k, "idempotency_key") == 0)
            ok = string_field(r, f, &req->idempotency_key, false);
        else if (strcmp(k, "ref_number") == 0) {
            if (cJSON_IsNull(f)) continue;
            if (lf_json_number_int(f, &req->ref_number))
                return bad_field(r, f, "an integer or null");
            req->has_ref_number = true;
        } else if (strcmp(k, "auto_merge") == 0) {
            if (!cJSON_IsBool(f)) return bad_field(r, f, "true or false");
            req->auto_merge = cJSON_IsTrue(f);
        } else if (strcmp(k, "labels") == 0) ok = object_text(r, f, labels);
        else if (strcmp(k, "metadata") == 0) ok = object_text(r, f, meta);
        else if (strcmp(k, "actor") == 0) ok = actor_field(r, f);
        else ok = unknown_field(r, f);
        if (!ok) return false;
    }
    if (!req->ref) {
        lf_reply_error(r, 400, "invalid_request", "field 'ref' is required");
        return false;
    }
    return idempotency_header(r, &req->idempotency_key);
}

void lf_api_create(lf_req *r) {
    if (!lf_query_history(r)) return;
    cJSON *j = lf_parse_body(r);
    if (!j) return;
    lf_create_req req = {0};
    char *labels = NULL, *meta = NULL;
    if (create_fields(r, j, &req, &labels, &meta)) {
        create_ctx *c = lf_xcalloc(1, sizeof *c);
        c->ref = lf_xstrdup(req.ref);
        c->r = r;
        req.labels = labels;
        req.metadata = meta;
        req.actor = r->actor;
        req.principal = r->principal[0] ? r->principal : NULL;
        lf_op_begin(r);
        lf_engine_create(r->srv->engine, &req, created, c);
    }
    cJSON_free(labels);
    cJSON_free(meta);
    cJSON_Delete(j);
}

static void got(const lf_result *res, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_GET);
    if (res->success) reply_record(r, 200, res->record);
    else lf_reply_result(r, res, 200);
}

void lf_api_get(lf_req *r) {
    if (!lf_query_history(r)) return;
    lf_op_begin(r);
    lf_engine_get(r->srv->engine, r->param, got, r);
}

static void listed(lf_code code, const char *error, const lf_record *const *recs,
                   size_t n, const char *next_cursor, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_LIST);
    if (code != LF_OK) {
        lf_reply_error(r, lf_status_of(code), lf_code_name(code), "%s",
                       error ? error : lf_code_name(code));
        return;
    }
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_key(&o, "records");
    lf_jw list = lf_jw_open(&b, '[');
    for (size_t i = 0; i < n; i++) {
        lf_jw_next(&list);
        lf_record_to_json_tail(recs[i], lf_req_history(r), &b);
    }
    lf_jw_close(&list, ']');
    lf_jw_str(&o, "next_cursor", next_cursor);
    lf_jw_close(&o, '}');
    size_t len = b.len;
    lf_reply_take(r, 200, "application/json", lf_buf_steal(&b), len);
}

static void found_by_ref(const lf_result *res, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_FIND);
    if (res->success) reply_record(r, 200, res->record);
    else lf_reply_result(r, res, 200);
}

void lf_api_list(lf_req *r) {
    static const char *const allowed[] = {"state", "repo",   "limit",   "cursor",
                                          "ref",   "parent", "history", NULL};
    uint64_t limit = 100;
    if (!lf_query_check(r, allowed) || !lf_query_u64(r, "limit", 1, 1000, &limit) ||
        !lf_query_history(r))
        return;
    const char *ref = lf_req_query(r, "ref");
    if (ref) {
        /* ?ref=REF: the one live record with that ref or alias, or 404. */
        if (lf_req_query(r, "state") || lf_req_query(r, "repo") ||
            lf_req_query(r, "cursor") || lf_req_query(r, "limit") ||
            lf_req_query(r, "parent")) {
            lf_reply_error(r, 400, "invalid_request",
                           "ref names one record: it takes no other query parameter "
                           "but history");
            return;
        }
        lf_op_begin(r);
        lf_engine_find_by_ref(r->srv->engine, ref, found_by_ref, r);
        return;
    }
    lf_list_query q = {.state = lf_req_query(r, "state"),
                       .repo = lf_req_query(r, "repo"),
                       .parent = lf_req_query(r, "parent"),
                       .limit = (size_t)limit,
                       .cursor = lf_req_query(r, "cursor")};
    lf_op_begin(r);
    lf_engine_list(r->srv->engine, &q, listed, r);
}

/* ---- transitions ------------------------------------------------------- */

static void transitioned(const lf_result *res, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_TRANSITION);
    if (res->success && res->record) etag(r, res->record);
    lf_reply_result(r, res, 200);
}

void lf_api_transition(lf_req *r) {
    if (!lf_query_history(r)) return;
    cJSON *j = lf_parse_body(r);
    if (!j) return;
    lf_transition_req req = {.id = r->param};
    char *meta = NULL;
    const cJSON *f;
    bool ok = true;
    lf_buf roles = LF_BUF_INIT;
    cJSON_ArrayForEach(f, j) {
        const char *k = f->string;
        if (strcmp(k, "to") == 0) ok = string_field(r, f, &req.to, false);
        else if (strcmp(k, "trigger") == 0) ok = string_field(r, f, &req.trigger, false);
        else if (strcmp(k, "idempotency_key") == 0)
            ok = string_field(r, f, &req.idempotency_key, false);
        else if (strcmp(k, "metadata") == 0) ok = object_text(r, f, &meta);
        else if (strcmp(k, "expected_version") == 0) {
            int64_t v;
            if (lf_json_number_int(f, &v) || v < 1)
                ok = bad_field(r, f, "a record version (an integer from 1)");
            else req.expected_version = (uint64_t)v;
        } else if (strcmp(k, "dry_run") == 0) {
            if (!cJSON_IsBool(f)) ok = bad_field(r, f, "true or false");
            else req.dry_run = cJSON_IsTrue(f);
        } else if (strcmp(k, "actor") == 0) ok = actor_field(r, f);
        else if (strcmp(k, "roles") == 0) ok = roles_field(r, f, &roles);
        else if (strcmp(k, "override") == 0) ok = override_field(r, f, &req);
        else ok = unknown_field(r, f);
        if (!ok) break;
    }
    if (ok && (!req.to || !req.trigger)) {
        lf_reply_error(r, 400, "invalid_request",
                       "fields 'to' and 'trigger' are required");
        ok = false;
    }
    if (ok) ok = idempotency_header(r, &req.idempotency_key);
    uint64_t v = 0;
    if (ok) ok = if_match(r, &v);
    if (ok && v && req.expected_version && v != req.expected_version) {
        lf_reply_error(r, 400, "invalid_request",
                       "header If-Match and field 'expected_version' differ");
        ok = false;
    }
    if (ok && v) req.expected_version = v;
    if (ok) {
        /* The API asks; only webhooks observe (see webhook.c). */
        req.metadata = meta;
        req.actor = r->actor;
        req.roles = r->srv->tokens ? r->roles : roles.len ? lf_buf_str(&roles) : NULL;
        req.roles_verified = r->srv->tokens != NULL;
        req.actor_kind = r->actor_kind[0] ? r->actor_kind : NULL;
        req.principal = r->principal[0] ? r->principal : NULL;
        lf_op_begin(r);
        lf_engine_transition(r->srv->engine, &req, transitioned, r);
    }
    lf_buf_free(&roles);
    cJSON_free(meta);
    cJSON_Delete(j);
}

/* ---- delete ------------------------------------------------------------- */

static void deleted(const lf_result *res, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_DELETE);
    lf_reply_result(r, res, 200);
}

/* DELETE /v1/records/{id}: an audited tombstone, as the CLI's delete. */
void lf_api_delete(lf_req *r) {
    uint64_t v;
    if (!if_match(r, &v)) return;
    lf_op_begin(r);
    lf_engine_delete_version(r->srv->engine, r->param, r->actor, v, deleted, r);
}

/* ---- policies ---------------------------------------------------------- */

/* What `policies --json` says, and since when this server serves it. */
void lf_api_policies(lf_req *r) {
    char *json = lf_engine_policies_json(r->srv->engine);
    size_t len = strlen(json);
    lf_console_policies_seen(r->srv);
    lf_buf b = LF_BUF_INIT;
    lf_buf_add(&b, json, len ? len - 1 : 0);    /* its closing '}' comes after */
    lf_buf_puts(&b, ",\"loaded_at\":");
    lf_buf_json_str(&b, r->srv->gen_since);
    lf_buf_putc(&b, '}');
    free(json);
    lf_reply_take(r, 200, "application/json", b.p, b.len);
}

static void reloaded(lf_code code, const char *error, const char *old_gen,
                     const char *new_gen, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_RELOAD);
    lf_buf b = LF_BUF_INIT;
    if (code == LF_OK) {
        lf_logf(LF_LOG_INFO, "policies reloaded by %s: %s -> %s", r->actor, old_gen,
                new_gen);
        lf_jw o = lf_jw_open(&b, '{');
        lf_jw_bool(&o, "success", true);
        lf_jw_str(&o, "generation", new_gen);
        lf_jw_str(&o, "previous_generation", old_gen);
        lf_jw_close(&o, '}');
        lf_reply_json(r, 200, b.p);
    } else {
        /* A broken policy set is the caller's to fix: 422 with every
         * problem as file:line: message; the old set keeps serving. */
        lf_logf(LF_LOG_WARN, "reload by %s refused, %s keeps serving: %s", r->actor,
                old_gen, error ? error : lf_code_name(code));
        lf_jw o = lf_jw_open(&b, '{');
        lf_jw_bool(&o, "success", false);
        lf_jw_str(&o, "code", lf_code_name(code));
        lf_jw_str(&o, "error", error ? error : lf_code_name(code));
        lf_jw_str(&o, "generation", old_gen);
        lf_jw_close(&o, '}');
        lf_reply_json(r, code == LF_INVALID_REQUEST ? 422 : lf_status_of(code), b.p);
    }
    lf_buf_free(&b);
}

void lf_api_reload(lf_req *r) {
    lf_op_begin(r);
    lf_server_reload(r->srv, r->actor, reloaded, r);
}

/* ---- attestations ------------------------------------------------------- */

static void attested(lf_code code, const char *error, const char *text, void *arg) {
    lf_req *r = arg;
    lf_op_end(r, LF_OP_GET);
    if (code != LF_OK) {
        lf_reply_error(r, lf_status_of(code), lf_code_name(code), "%s",
                       error ? error : lf_code_name(code));
        return;
    }
    lf_reply_json(r, 200, text);
}

void lf_api_attestations(lf_req *r) {
    lf_op_begin(r);
    lf_engine_attestations(r->srv->engine, r->param, attested, r);
}

/* GET /v1/records/{id}/explain[?trigger=T]: every way out, judged now as
 * the caller (the token's name and roles; without tokens ?actor= and
 * ?roles=a,b may say who). */
void lf_api_explain(lf_req *r) {
    static const char *const allowed[] = {"trigger", "actor", "roles", NULL};
    if (!lf_query_check(r, allowed)) return;
    if (r->srv->tokens && (lf_req_query(r, "actor") || lf_req_query(r, "roles"))) {
        lf_reply_error(r, 400, "invalid_request",
                       "actor and roles are the token's: they cannot be asked for");
        return;
    }
    lf_explain_req req = {.id = r->param,
                          .actor = r->srv->tokens ? r->actor : lf_req_query(r, "actor"),
                          .roles = r->srv->tokens ? r->roles : lf_req_query(r, "roles"),
                          .trigger = lf_req_query(r, "trigger")};
    if (!req.actor) req.actor = r->actor;
    lf_op_begin(r);
    lf_engine_explain(r->srv->engine, &req, attested, r);
}

/* POST /v1/records/{id}/acknowledgements {"reason": "..."}: the overrides
 * on the record reviewed, by the caller (not the one who overrode). */
void lf_api_ack(lf_req *r) {
    cJSON *j = lf_parse_body(r);
    if (!j) return;
    const char *reason = NULL;
    const cJSON *f;
    bool ok = true;
    cJSON_ArrayForEach(f, j) {
        if (strcmp(f->string, "reason") == 0) ok = string_field(r, f, &reason, false);
        else if (strcmp(f->string, "actor") == 0) ok = actor_field(r, f);
        else ok = unknown_field(r, f);
        if (!ok) break;
    }
    if (ok && (!reason || !*reason)) {
        lf_reply_error(r, 400, "invalid_request", "field 'reason' is required");
        ok = false;
    }
    if (ok) {
        lf_op_begin(r);
        lf_engine_acknowledge(r->srv->engine, r->param, r->actor, reason, transitioned,
                              r);
    }
    cJSON_Delete(j);
}

/* ---- import ------------------------------------------------------------- */

/* POST /v1/import: LoopForge's records, one object or an array, imported
 * many at once, their results in order (lf_engine_import_all);
 * ?dry_run=true writes nothing. */
typedef struct import_ctx {
    lf_req *r;
    cJSON *body;
    const cJSON *next;          /* the record to import next */
    char *text;                 /* the one `next` last gave */
    bool single, dry_run;
    lf_buf out;
    lf_jw list;
    size_t ok, refused;
} import_ctx;

static const char *import_next(void *arg) {
    import_ctx *x = arg;
    cJSON_free(x->text);
    x->text = NULL;
    const cJSON *rec = x->next;
    if (!rec) return NULL;
    x->next = x->single ? NULL : rec->next;
    return x->text = lf_xptr(cJSON_PrintUnformatted(rec));
}

static void imported(const lf_result *res, void *arg) {
    import_ctx *x = arg;
    char *json = lf_result_json_tail(res, lf_req_history(x->r));
    lf_jw_next(&x->list);
    lf_buf_puts(&x->out, json);
    free(json);
    if (res->success) x->ok++;
    else x->refused++;
}

static void import_done(void *arg) {
    import_ctx *x = arg;
    lf_op_end(x->r, LF_OP_CREATE);
    lf_jw_close(&x->list, ']');
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_bool(&o, "dry_run", x->dry_run);
    lf_jw_int(&o, "imported", (int64_t)x->ok);
    lf_jw_int(&o, "refused", (int64_t)x->refused);
    lf_jw_raw(&o, "results", x->out.p, "[]");
    lf_jw_close(&o, '}');
    lf_reply_json(x->r, 200, b.p);
    lf_buf_free(&b);
    lf_buf_free(&x->out);
    cJSON_free(x->text);
    cJSON_Delete(x->body);
    free(x);
}

void lf_api_import(lf_req *r) {
    static const char *const allowed[] = {"dry_run", NULL};
    if (!lf_query_check(r, allowed)) return;
    const char *dry = lf_req_query(r, "dry_run");
    if (dry && strcmp(dry, "true") != 0 && strcmp(dry, "false") != 0) {
        lf_reply_error(r, 400, "invalid_request", "dry_run must be true or false");
        return;
    }
    cJSON *j = lf_parse_body_any(r);
    if (!j) return;
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) {
        cJSON_Delete(j);
        lf_reply_error(r, 400, "invalid_request",
                       "the body must be a record, or an array of records, as LoopForge "
                       "writes them");
        return;
    }
    import_ctx *x = lf_xcalloc(1, sizeof *x);
    x->r = r;
    x->body = j;
    x->single = cJSON_IsObject(j);
    x->next = x->single ? j : j->child;
    x->dry_run = dry && strcmp(dry, "true") == 0;
    x->list = lf_jw_open(&x->out, '[');
    lf_op_begin(r);
    lf_engine_import_all(r->srv->engine, import_next, r->actor, x->dry_run, imported,
                         import_done, x);
}

/* GET /v1/timers[?due_by=T][&records=ID,ID...][&limit=N][&cursor=C]: the
 * durable timers and when they are due (they fire on the server's own
 * tick), soonest first, a page at a time. */
void lf_api_timers(lf_req *r) {
    static const char *const allowed[] = {"due_by", "records", "limit", "cursor", NULL};
    uint64_t limit = 1000;
    if (!lf_query_check(r, allowed) || !lf_query_u64(r, "limit", 1, 1000, &limit)) return;
    lf_timers_query q = {.limit = (size_t)limit, .cursor = lf_req_query(r, "cursor")};
    const char *by = lf_req_query(r, "due_by"), *ids = lf_req_query(r, "records");
    char ts[LF_TS_LEN + 1];
    if (by && (lf_ts_normalize(by, ts) || lf_ts_parse(ts, &q.due_by_us))) {
        lf_reply_error(r, 400, "invalid_request",
                       "due_by takes a time like 2026-12-05T10:00:00Z, got '%s'", by);
        return;
    }
    /* records=ID,ID...: split in a copy (the ids point into it); one more
     * than the engine takes is refused by it */
    char *copy = ids ? lf_xstrdup(ids) : NULL, *list[LF_TIMERS_IDS_MAX + 1];
    for (char *p = copy, *save = NULL, *id; ids && (id = strtok_r(p, ",", &save)); p = NULL)
        if (q.nids <= LF_TIMERS_IDS_MAX) list[q.nids++] = id;
    if (ids) q.ids = (const char *const *)list;
    lf_op_begin(r);
    lf_engine_timers(r->srv->engine, &q, attested, r);
    free(copy);
}
