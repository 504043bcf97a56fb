/* webhook.c -- GitHub intake: POST /v1/webhooks/github.
 *
 *   1. X-Hub-Signature-256 must be HMAC-SHA256 of the raw body under the
 *      webhook secret (compared in constant time); otherwise 401 and
 *      nothing else happens.
 *   2. `ping` is answered 200.
 *   3. The current policy generation's routes (policies/routes/, Lua) turn
 *      the event into requests: create a record, or move the record a ref
 *      or alias names (pr:owner/repo#N, sha:…).
 *   4. Each request runs in order, as an *observation*: GitHub reports what
 *      already happened, so the engine records it even where the rules
 *      would refuse, marking the entry a violation. Its idempotency key is
 *      "<X-GitHub-Delivery>:<index>", so a redelivery -- minutes or days
 *      later, after a restart, on another server sharing the store --
 *      changes nothing and is answered {"duplicate":true}.
 *
 * GitHub gives up on a delivery after 10 s. Requests run one after the
 * other; hooks run after each commit, on the loop, under their instruction
 * budgets. If the whole delivery is not done by --webhook-deadline (8 s),
 * it is answered 202 {"accepted":true} and finishes in the background; the
 * outcome is logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "internal.h"
#include "../engine/engine_internal.h"

typedef struct delivery {
    lf_server *srv;
    lf_req *r;                  /* NULL once answered early */
    char id[129];               /* X-GitHub-Delivery */
    char event[64];
    char action[64];
    lf_route_result rr;
    size_t next;                /* the request running now */
    char key[200];              /* its idempotency key */
    lf_buf results;             /* JSON objects, comma-separated */
    lf_jw list;                 /* writes into results */
    size_t applied, duplicates, ignored, errors, unavailable, violations;
    size_t changed, stale;      /* of the applied observations */
    char *why_ignored;          /* the first reason */
    char *error;                /* the first error */
    struct event *deadline;
    uint64_t start_ns;
} delivery;

static void run_next(delivery *d);

/* ---- the signature ----------------------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* NULL if the body is signed with our secret, else why not. */
static const char *signature_problem(lf_req *r, const char *body, size_t len) {
    const char *sig = lf_req_header(r, "X-Hub-Signature-256");
    if (!sig) return "missing X-Hub-Signature-256";
    unsigned char want[32], got[EVP_MAX_MD_SIZE];
    if (strncmp(sig, "sha256=", 7) != 0 || strlen(sig) != 7 + 64)
        return "malformed X-Hub-Signature-256 (want sha256=<64 hex digits>)";
    for (int i = 0; i < 32; i++) {
        int hi = hexval(sig[7 + 2 * i]), lo = hexval(sig[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return "malformed X-Hub-Signature-256 (want sha256=<64 hex digits>)";
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    unsigned int glen = 0;
    lf_server *s = r->srv;
    if (!HMAC(EVP_sha256(), s->secret, (int)s->secret_len, (const unsigned char *)body,
              len, got, &glen) ||
        glen != 32)
        return "cannot compute HMAC-SHA256";
    if (CRYPTO_memcmp(want, got, 32) != 0)
        return "X-Hub-Signature-256 does not match the body (wrong secret?)";
    return NULL;
}

static bool delivery_id_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* ---- results ----------------------------------------------------------- */

/* Opens the next result object with what every result says. */
static lf_jw result_head(delivery *d, const lf_route_request *q) {
    lf_jw_next(&d->list);
    lf_jw o = lf_jw_open(&d->results, '{');
    lf_jw_str(&o, "route", q->route);
    lf_jw_str(&o, "op", q->op == LF_ROUTE_CREATE ? "create" : "transition");
    lf_jw_str(&o, "ref", q->ref);
    return o;
}

static void note_ignored(delivery *d, const lf_route_request *q, const char *why) {
    lf_jw o = result_head(d, q);
    lf_jw_str(&o, "ignored", why);
    lf_jw_close(&o, '}');
    d->ignored++;
    if (!d->why_ignored) d->why_ignored = lf_xstrdup(why);
}

/* Sorts one engine result into applied / duplicate / ignored / error. */
static void note_result(delivery *d, const lf_route_request *q, const lf_result *res) {
    if (res->code == LF_DUPLICATE_REF) {
        char why[512];
        snprintf(why, sizeof why, "%s", res->error ? res->error : "duplicate ref");
        note_ignored(d, q, why);
        return;
    }
    lf_jw o = result_head(d, q);
    lf_jw_str(&o, "code", lf_code_name(res->code));
    lf_jw_str(&o, "record_id", res->record ? lf_record_id(res->record) : NULL);
    lf_jw_str(&o, "from", res->previous_state);
    lf_jw_str(&o, "to", res->new_state);
    lf_jw_bool(&o, "duplicate", res->duplicate);
    lf_jw_raw(&o, "violation", res->violation, "null");
    if (res->observation && res->success) {
        lf_jw_bool(&o, "changed", res->changed && !res->duplicate);
        lf_jw_str(&o, "stale", res->stale);
    }
    if (!res->success) lf_jw_str(&o, "error", res->error);
    lf_jw_close(&o, '}');
    if (res->success && res->duplicate) d->duplicates++;
    else if (res->success) d->applied++;
    else if (res->code == LF_UNAVAILABLE || res->code == LF_CONFLICT) d->unavailable++;
    else d->errors++;
    if (res->success && !res->duplicate) {
        /* A create is news; an observation says whether it was. */
        if (!res->observation || res->changed) d->changed++;
        else if (res->stale) d->stale++;
    }
    if (res->violation && !res->duplicate) d->violations++;
    if (!res->success && !d->error) d->error = lf_xstrdup(res->error ? res->error : "");
}

/* ---- the reply --------------------------------------------------------- */

static void delivery_free(delivery *d) {
    if (d->deadline) event_free(d->deadline);
    lf_route_result_free(&d->rr);
    lf_buf_free(&d->results);
    free(d->why_ignored);
    free(d->error);
    free(d);
}

/* Opens the reply object with what every reply says. */
static lf_jw body_head(delivery *d, lf_buf *b, bool success) {
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_bool(&o, "success", success);
    lf_jw_str(&o, "delivery", d->id);
    lf_jw_str(&o, "event", d->event);
    lf_jw_str(&o, "action", d->action[0] ? d->action : NULL);
    return o;
}

static void finish(delivery *d) {
    lf_buf b = LF_BUF_INIT;
    lf_jw o;
    int status, result;
    if (d->unavailable) {
        status = 503, result = LF_WH_ERROR;
        o = body_head(d, &b, false);
        lf_jw_str(&o, "code", "unavailable");
        lf_jw_str(&o, "error", d->error);
    } else if (d->errors) {
        /* A route asked for something impossible (an unknown state, …):
         * a policy bug. Not 2xx, so it shows in GitHub's delivery log and
         * can be redelivered once the routes are fixed. */
        status = 500, result = LF_WH_ERROR;
        o = body_head(d, &b, false);
        lf_jw_str(&o, "code", "route_error");
        lf_jw_str(&o, "error", d->error);
    } else if (d->applied || d->duplicates) {
        status = 200;
        result = !d->applied  ? LF_WH_DUPLICATE
                 : d->changed ? LF_WH_OK
                 : d->stale   ? LF_WH_STALE
                              : LF_WH_UNCHANGED;
        o = body_head(d, &b, true);
        lf_jw_bool(&o, "duplicate", !d->applied);
        lf_jw_bool(&o, "changed", d->changed > 0);
        lf_jw_int(&o, "violations", (int64_t)d->violations);
    } else {
        status = 202, result = LF_WH_IGNORED;
        o = body_head(d, &b, true);
        lf_jw_str(&o, "ignored", d->why_ignored ? d->why_ignored : "nothing to do");
    }
    lf_jw_key(&o, "results");
    lf_buf_putc(&b, '[');
    lf_buf_add(&b, d->results.p ? d->results.p : "", d->results.len);
    lf_buf_putc(&b, ']');
    lf_jw_close(&o, '}');
    if (d->r) {
        lf_metrics_webhook(&d->srv->metrics, d->event, result);
        lf_reply_json(d->r, status, b.p);
    } else {
        lf_logf(status < 300 ? LF_LOG_INFO : LF_LOG_ERROR,
                "delivery %s finished after its early reply (%d): %s", d->id, status,
                b.p);
    }
    lf_buf_free(&b);
    delivery_free(d);
}

/* GitHub stops waiting at 10 s: answer before that, keep working. */
static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    delivery *d = arg;
    (void)fd;
    (void)what;
    if (!d->r) return;
    lf_buf b = LF_BUF_INIT;
    lf_jw o = body_head(d, &b, true);
    lf_jw_bool(&o, "accepted", true);
    lf_jw_int(&o, "pending", (int64_t)(d->rr.nrequests - d->next));
    lf_jw_close(&o, '}');
    lf_metrics_webhook(&d->srv->metrics, d->event, LF_WH_LATE);
    lf_logf(LF_LOG_WARN,
            "delivery %s: answered 202 at the %d ms deadline, %zu request(s) "
            "still running",
            d->id, d->srv->cfg.webhook_deadline_ms, d->rr.nrequests - d->next);
    lf_reply_json(d->r, 202, b.p);
    d->r = NULL;
    lf_buf_free(&b);
}

/* ---- running the requests ---------------------------------------------- */

static const lf_route_request *current(delivery *d) { return &d->rr.requests[d->next]; }

static void advance(delivery *d) {
    d->next++;
    run_next(d);
}

static void on_applied(const lf_result *res, void *arg) {
    delivery *d = arg;
    note_result(d, current(d), res);
    advance(d);
}

static void on_found(const lf_result *res, void *arg) {
    delivery *d = arg;
    const lf_route_request *q = current(d);
    if (!res->success) {
        if (res->code == LF_NOT_FOUND) {
            char why[600];
            snprintf(why, sizeof why, "no record for %s", q->ref);
            note_ignored(d, q, why);
        } else {
            note_result(d, q, res);
        }
        advance(d);
        return;
    }
    lf_transition_req t = {
        .id = lf_record_id(res->record),
        .to = q->to,
        .trigger = q->trigger,
        .metadata = q->metadata,
        .actor = q->actor ? q->actor : "github:unknown",
        .idempotency_key = d->key,
        .observed = true,
    };
    lf_engine_transition(d->srv->engine, &t, on_applied, d);
}

static void run_next(delivery *d) {
    if (d->next == d->rr.nrequests) {
        finish(d);
        return;
    }
    const lf_route_request *q = current(d);
    snprintf(d->key, sizeof d->key, "%s:%zu", d->id, d->next);
    if (q->op == LF_ROUTE_CREATE) {
        lf_create_req c = {
            .ref = q->ref,
            .repo = q->repo,
            .has_ref_number = q->has_ref_number,
            .ref_number = q->ref_number,
            .labels = q->labels,
            .metadata = q->metadata,
            .actor = q->actor ? q->actor : "github:unknown",
            .idempotency_key = d->key,
            .observed = true,
        };
        lf_engine_create(d->srv->engine, &c, on_applied, d);
    } else {
        /* Address the record by ref or alias, then by id. */
        lf_engine_find_by_ref(d->srv->engine, q->ref, on_found, d);
    }
}

/* ---- the handler ------------------------------------------------------- */

static void reject(lf_req *r, const char *event, int result, int status, const char *code,
                   const char *msg) {
    lf_metrics_webhook(&r->srv->metrics, event, result);
    if (status == 401) lf_logf(LF_LOG_WARN, "webhook refused (%s): %s", r->id, msg);
    lf_reply_error(r, status, code, "%s", msg);
}

/* The payload's "action", if any: for the log and the reply. */
static bool parse_payload(lf_req *r, delivery *d, const char *body, size_t len) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!cJSON_IsObject(j)) {
        char msg[160];
        if (j) snprintf(msg, sizeof msg, "the payload must be a JSON object");
        else lf_json_error(body, len, end, msg, sizeof msg);
        cJSON_Delete(j);
        reject(r, d->event, LF_WH_INVALID, 400, "invalid_request", msg);
        return false;
    }
    char why[256];
    if (lf_json_text_check(body, len, "payload", why, sizeof why)) {
        cJSON_Delete(j);
        reject(r, d->event, LF_WH_INVALID, 400, "invalid_request", why);
        return false;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "action");
    if (cJSON_IsString(a)) snprintf(d->action, sizeof d->action, "%s", a->valuestring);
    cJSON_Delete(j);
    return true;
}

static void ping(lf_req *r, const char *event, const char *id) {
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_bool(&o, "success", true);
    lf_jw_str(&o, "event", "ping");
    lf_jw_str(&o, "delivery", id);
    lf_jw_bool(&o, "pong", true);
    lf_jw_close(&o, '}');
    lf_metrics_webhook(&r->srv->metrics, event, LF_WH_PING);
    lf_reply_json(r, 200, b.p);
    lf_buf_free(&b);
}

void lf_webhook_github(lf_req *r) {
    lf_server *s = r->srv;
    const char *event = lf_req_header(r, "X-GitHub-Event");
    const char *id = lf_req_header(r, "X-GitHub-Delivery");
    if (!s->secret) {
        reject(r, event, LF_WH_INVALID, 404, "not_found",
               "webhook intake is off: start "
               "'loopforge serve' with --webhook-secret-file");
        return;
    }
    size_t len;
    const char *body = lf_req_body(r, &len);
    const char *why = signature_problem(r, body, len);
    if (why) {
        reject(r, event, LF_WH_UNAUTHORIZED, 401, "unauthorized", why);
        return;
    }
    lf_req_str(r->actor, sizeof r->actor, "github");
    if (!event || !*event || strlen(event) >= 64) {
        reject(r, event, LF_WH_INVALID, 400, "invalid_request", "missing X-GitHub-Event");
        return;
    }
    if (!id || !delivery_id_ok(id)) {
        reject(r, event, LF_WH_INVALID, 400, "invalid_request",
               "missing or malformed "
               "X-GitHub-Delivery (the idempotency key of a delivery)");
        return;
    }
    if (strcmp(event, "ping") == 0) {
        ping(r, event, id);
        return;
    }
    delivery *d = lf_xcalloc(1, sizeof *d);
    d->list = (lf_jw){&d->results, false};
    d->srv = s;
    d->r = r;
    d->start_ns = lf_mono_ns();
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->event, sizeof d->event, "%s", event);
    if (!parse_payload(r, d, body, len)) {
        free(d);
        return;
    }
    lf_event ev = {.source = "github",
                   .name = d->event,
                   .delivery = d->id,
                   .payload = body,
                   .payload_len = len};
    lf_engine_route(s->engine, &ev, &d->rr);
    if (d->rr.error) {
        lf_logf(LF_LOG_ERROR, "delivery %s (%s): %s", d->id, d->event, d->rr.error);
        /* The route raised on this payload: most often a payload that is
         * not what the route expects (a field missing or of another
         * type), so a 4xx; GitHub's delivery log shows it either way. */
        reject(r, d->event, LF_WH_ERROR, 422, "route_error", d->rr.error);
        delivery_free(d);
        return;
    }
    if (d->rr.nrequests == 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", d->rr.ignored ? d->rr.ignored : "");
        if (!msg[0])
            snprintf(msg, sizeof msg, "no route for %s%s%s", d->event,
                     d->action[0] ? "." : "", d->action);
        d->why_ignored = lf_xstrdup(msg);
        finish(d);
        return;
    }
    struct timeval tv = {s->cfg.webhook_deadline_ms / 1000,
                         (s->cfg.webhook_deadline_ms % 1000) * 1000};
    if ((d->deadline = evtimer_new(s->base, on_deadline, d)))
        evtimer_add(d->deadline, &tv);
    run_next(d);
}
