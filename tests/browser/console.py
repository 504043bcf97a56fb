#!/usr/bin/env python3
"""Browser tests of the web console (ui/), run by tests/cli/browser.sh.

Drives headless Chromium through chromedriver against a real `loopforge
serve` that browser.sh started and seeded. Prints one TAP-like line per
test, "ok - NAME" or "not ok - NAME" (with "#" lines saying why);
browser.sh numbers them. Ends with "# done" when it ran to the end.

Environment (set by browser.sh):
  LF_BASE        the seeded server (no tokens)
  LF_DENIED      a record whose history holds a denial
  LF_DENY_REASON the denial's reason text
  LF_LIVE        a record at issue_created, moved by this script
  LF_AUTH_BASE   a server started with --tokens (optional)
  LF_AUTH_TOKEN  a read token of that server
  LF_SHOTS       where to save board.png and record.png
  CHROMEDRIVER, CHROMIUM  paths (default: found on PATH)
"""
import json
import os
import re
import shutil
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["LF_BASE"].rstrip("/")
SHOTS = os.environ.get("LF_SHOTS") or "."
WAIT = float(os.environ.get("LF_WAIT", "10"))
FAILED = 0


def ok(name):
    print("ok - " + name, flush=True)


def not_ok(name, *why):
    global FAILED
    FAILED += 1
    print("not ok - " + name, flush=True)
    for line in why:
        for part in str(line).splitlines() or [""]:
            print("#   " + part, flush=True)


def check(name, cond, *why):
    if cond:
        ok(name)
    else:
        not_ok(name, *why)
    return cond


def http(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    rq = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        rq.add_header("Content-Type", "application/json")
    if token:
        rq.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(rq, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def all_records(base, token=None):
    """Every record, following next_cursor (as the console does)."""
    out, cursor = [], None
    while True:
        q = "/v1/records?limit=1000" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
        st, body = http("GET", base + q, token=token)
        if st != 200:
            raise RuntimeError("GET %s: %s %s" % (q, st, body[:200]))
        j = json.loads(body)
        out += j["records"]
        cursor = j.get("next_cursor")
        if not cursor:
            return out


def wait_for(drv, what, fn, timeout=WAIT):
    """Poll fn(drv) until truthy; returns its value or None on timeout."""
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.1,
                             ignored_exceptions=(WebDriverException,)).until(lambda d: fn(d))
    except TimeoutException:
        print("#   timed out after %gs waiting for %s" % (timeout, what), flush=True)
        return None


def board_counts(drv):
    """{state: (count shown in the header, cards in the column)}"""
    return drv.execute_script("""
        const out = {};
        for (const col of document.querySelectorAll('.column[data-state]')) {
            const c = col.querySelector('.count');
            out[col.dataset.state] = [c ? c.textContent.trim() : null,
                                      col.querySelectorAll('.card').length];
        }
        return out;""")


def expected_counts(records, workflow="loopforge"):
    n = {}
    for r in records:
        if (r.get("workflow") or "loopforge") == workflow:
            n[r["state"]] = n.get(r["state"], 0) + 1
    return n


def counts_match(drv, want):
    got = board_counts(drv)
    if not got:
        return False
    for s, (shown, cards) in got.items():
        if shown != str(want.get(s, 0)) or cards != want.get(s, 0):
            return False
    return all(s in got for s in want)


def shot(drv, name, height=None, width=None):
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name)
    if height or width:
        size = drv.get_window_size()
        drv.set_window_size(width or size["width"], height or size["height"])
        drv.save_screenshot(path)
        drv.set_window_size(size["width"], size["height"])
    else:
        drv.save_screenshot(path)
    print("# screenshot " + path, flush=True)


def make_driver():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1600,1000", "--disable-gpu", "--no-first-run"):
        opts.add_argument(a)
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv_path = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=drv_path), options=opts)


def console_errors(drv):
    try:
        return [e["message"] for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    except Exception:
        return []


def test_board(drv):
    records = all_records(BASE)
    want = expected_counts(records)
    drv.get(BASE + "/ui/")
    got = wait_for(drv, "the board's columns", lambda d: d.find_elements(By.CSS_SELECTOR, ".column[data-state] .count"))
    if not check("the board renders its columns", got, "no .column[data-state] .count on /ui/",
                 *console_errors(drv)):
        return False
    done = wait_for(drv, "the counts", lambda d: counts_match(d, want))
    check("each column's count is the number of records in that state (as GET /v1/records says)", done,
          "want %s" % json.dumps(want, sort_keys=True),
          "got  %s" % json.dumps(board_counts(drv), sort_keys=True))
    states = drv.execute_script(
        "return Array.from(document.querySelectorAll('.column[data-state]')).map(c => c.dataset.state)")
    st, body = http("GET", BASE + "/v1/workflows")
    order = [w for w in json.loads(body)["workflows"] if w["name"] == "loopforge"][0]["states"] if st == 200 else None
    check("the columns are the workflow's states, in its order", order is not None and states == order,
          "columns %s" % states, "workflow %s" % order)
    ids = set(drv.execute_script(
        "return Array.from(document.querySelectorAll('.card[data-id]')).map(c => c.dataset.id)"))
    check("every record has its card", ids == {r["record_id"] for r in records if r.get("workflow", "loopforge") == "loopforge"},
          "cards %d, records %d" % (len(ids), len(records)))
    denied = os.environ.get("LF_DENIED")
    link = drv.find_elements(By.CSS_SELECTOR, '.card[data-id="%s"] a[href="#/record/%s"]' % (denied, denied))
    check("a card links to its record's page", link, "no link on the card of " + str(denied))
    pr = drv.find_elements(By.CSS_SELECTOR, '.card[data-id="%s"] a.pr[href^="https://github.com/"]' % denied)
    check("a card with a pr_url links to the PR", pr, "no a.pr on the card of " + str(denied))
    badges = lambda rid: drv.execute_script(
        "return Array.from(document.querySelectorAll('.card[data-id=\"' + arguments[0] + '\"] .badge'))"
        ".map(b => b.dataset.badge)", rid)
    v, o, plain = (os.environ.get("LF_VIOLATION"), os.environ.get("LF_OVERRIDE"), os.environ.get("LF_LIVE"))
    check("the card of a record with a violation has the violation badge (only)", badges(v) == ["violation"],
          "badges: %s" % badges(v))
    check("the card of a record with an override has the override badge (only)", badges(o) == ["override"],
          "badges: %s" % badges(o))
    check("a plain record's card has no badge", badges(plain) == [], "badges: %s" % badges(plain))
    ages = [a for a in drv.execute_script(
        "return Array.from(document.querySelectorAll('.card time.age')).map(t => t.textContent)")
        if not re.match(r"^\d+(s|m|h \d+m|d \d+h)$", a)]
    check("every card shows its age in state", not ages and drv.find_elements(By.CSS_SELECTOR, ".card time.age"),
          "odd ages: %s" % ages[:5])
    return True


def test_timer_badge(drv):
    # A workflow's own timer (specfuse-unit's 2h timeout on dispatched) is
    # not on the record: the board learns it from GET /v1/timers.
    timed = os.environ["LF_TIMED"]
    drv.get(BASE + "/ui/#/?workflow=specfuse-unit")
    card = wait_for(drv, "the dispatched unit's card",
                    lambda d: d.find_elements(By.CSS_SELECTOR, '.card[data-id="%s"]' % timed))
    badges = drv.execute_script(
        "return Array.from(document.querySelectorAll('.card[data-id=\"' + arguments[0] + '\"] .badge'))"
        ".map(b => b.dataset.badge)", timed) if card else None
    check("a record with a workflow timer pending has the timer badge", badges == ["timer"],
          "badges: %s" % badges, *console_errors(drv))
    # A unit dispatched while the board is open gets its badge live: the
    # console asks for the timers of the records that changed, and never
    # for every timer (at a million records that is a 130 MB answer).
    st, body = http("POST", BASE + "/v1/records", {"ref": "unit-live", "workflow": "specfuse-unit"})
    unit = json.loads(body).get("record_id") if st == 201 else None
    st, body = http("POST", BASE + "/v1/records/%s/transitions" % unit,
                    {"to": "dispatched", "trigger": "unit.dispatch"})
    check("the API dispatches a unit while the board is open (200)", st == 200, "%s %s" % (st, body[:300]))
    live = wait_for(drv, "the live unit's timer badge", lambda d: d.find_elements(
        By.CSS_SELECTOR, '.card[data-id="%s"] .badge[data-badge="timer"]' % unit))
    check("... its card gets the timer badge without a reload", live, *console_errors(drv))
    asked = drv.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.indexOf('/v1/timers') >= 0)")
    check("the board asks for the timers of its records only",
          asked and all("?records=" in n for n in asked), "asked: %s" % asked[:5])
    drv.get(BASE + "/ui/#/")


def test_filter(drv):
    # The free text filter narrows the board to one card, and back.
    denied = os.environ["LF_DENIED"]
    q = drv.find_element(By.ID, "f-q")
    q.clear()
    q.send_keys(denied)
    one = wait_for(drv, "the filtered board", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 1
                   and d.find_elements(By.CSS_SELECTOR, '.card[data-id="%s"]' % denied))
    check("the search filter narrows the board to the record", one,
          "cards: %d" % len(drv.find_elements(By.CSS_SELECTOR, ".card")))
    drv.execute_script("const q = document.getElementById('f-q'); q.value = ''; q.dispatchEvent(new Event('input'));")
    wait_for(drv, "the unfiltered board", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) > 1)


def test_live(drv):
    live = os.environ["LF_LIVE"]
    in_col = '.column[data-state="%s"] .card[data-id="' + live + '"]'
    check("the record to move is in issue_created before", drv.find_elements(By.CSS_SELECTOR, in_col % "issue_created"))
    # A marker that a reload would lose.
    drv.execute_script("window.__lf_no_reload = 42;")
    st, body = http("POST", BASE + "/v1/records/%s/transitions" % live,
                    {"to": "task_queued", "trigger": "browser.test", "actor": "dana"})
    check("the API moves the record (200)", st == 200, "%s %s" % (st, body[:300]))
    moved = wait_for(drv, "the card in task_queued", lambda d: d.find_elements(By.CSS_SELECTOR, in_col % "task_queued")
                     and not d.find_elements(By.CSS_SELECTOR, in_col % "issue_created"))
    check("a transition posted through the API moves its card on the open board", moved,
          "live status: " + drv.execute_script("return document.getElementById('live-status').textContent"),
          *console_errors(drv))
    check("... without a reload", drv.execute_script("return window.__lf_no_reload") == 42)
    want = expected_counts(all_records(BASE))
    done = wait_for(drv, "the counts after the move", lambda d: counts_match(d, want))
    check("... and the counts of both columns follow", done,
          "want %s" % json.dumps(want, sort_keys=True),
          "got  %s" % json.dumps(board_counts(drv), sort_keys=True))
    actor = drv.find_elements(By.CSS_SELECTOR, '.card[data-id="%s"] .actor' % live)
    check("the moved card names the last actor", actor and actor[0].text == "dana",
          "actor: %s" % (actor[0].text if actor else None))
    # A transition while the stream is down is caught up on reconnect.
    n = drv.execute_script("return window.lfConsole.connects")
    drv.execute_script("window.lfConsole.dropStream()")
    st, body = http("POST", BASE + "/v1/records/%s/transitions" % live,
                    {"to": "pr_created", "trigger": "browser.test", "actor": "erin"})
    check("the API moves the record again while the console's stream is cut (200)", st == 200, "%s %s" % (st, body[:300]))
    back = wait_for(drv, "the card in pr_created", lambda d: d.find_elements(By.CSS_SELECTOR, in_col % "pr_created")
                    and d.execute_script("return window.lfConsole.connects") > n)
    check("the console reconnects and catches up with what it missed", back,
          "connects %s -> %s" % (n, drv.execute_script("return window.lfConsole.connects")), *console_errors(drv))
    # A record created meanwhile shows up too.
    st, body = http("POST", BASE + "/v1/records", {"ref": "https://github.com/o/r/issues/999", "repo": "o/r"})
    new_id = json.loads(body).get("record_id") if st == 201 else None
    check("the API creates a record (201)", new_id, "%s %s" % (st, body[:300]))
    if new_id:
        check("a record created through the API appears on the open board",
              wait_for(drv, "the new card", lambda d: d.find_elements(
                  By.CSS_SELECTOR, '.column[data-state="issue_created"] .card[data-id="%s"]' % new_id)))
    drv.execute_script("document.activeElement && document.activeElement.blur()")
    shot(drv, "board.png", 1000, 2300)


def test_record(drv):
    rid = os.environ["LF_DENIED"]
    reason = os.environ["LF_DENY_REASON"]
    st, body = http("GET", BASE + "/v1/records/%s/audit" % rid)
    seqs = [json.loads(l)["seq"] for l in body.splitlines() if l.strip()]
    st, body = http("GET", BASE + "/v1/records/" + rid)
    state = json.loads(body)["state"]
    drv.get(BASE + "/ui/#/record/" + rid)
    entries = wait_for(drv, "the timeline", lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.entry")) == len(seqs)
                       and d.find_elements(By.CSS_SELECTOR, "li.entry"))
    check("the record page lists every audit entry (%d)" % len(seqs), entries,
          "entries shown: %d" % len(drv.find_elements(By.CSS_SELECTOR, "li.entry")), *console_errors(drv))
    shown = drv.execute_script("return Array.from(document.querySelectorAll('li.entry')).map(e => +e.dataset.seq)")
    check("... in seq order", shown == sorted(seqs) and shown == seqs, "shown %s" % shown, "audit %s" % seqs)
    denied = drv.find_elements(By.CSS_SELECTOR, 'li.entry[data-kind="denied"]')
    check("the denial is in the timeline", denied)
    check("... with its reason text", denied and reason in denied[0].text,
          "want: " + reason, "got: " + (denied[0].text if denied else ""))
    check("... its deny decision stands out", drv.find_elements(By.CSS_SELECTOR, 'li.entry[data-kind="denied"] .decision.verdict-deny'))
    kinds = drv.execute_script("return Array.from(document.querySelectorAll('li.entry')).map(e => e.dataset.kind)")
    check("the timeline starts with the creation", kinds and kinds[0] == "created", "kinds %s" % kinds)
    cur = wait_for(drv, "#state-%s.current" % state,
                   lambda d: d.find_elements(By.CSS_SELECTOR, 'svg [id="state-%s"].current' % state))
    check("the graph marks the current state (#state-%s.current)" % state, cur,
          "graph box: " + drv.execute_script("const f = document.querySelector('.graph-box'); return f ? f.textContent.slice(0, 200) : 'none'"))
    check("... and only that one",
          len(drv.find_elements(By.CSS_SELECTOR, "svg .current")) == 1)
    check("the graph marks the edges the record took (edge-ci_passed-awaiting_review.taken)",
          drv.find_elements(By.CSS_SELECTOR, 'svg [id="edge-ci_passed-awaiting_review"].taken'))
    check("... and not the edges it did not take (edge-ci_passed-merged)",
          drv.find_elements(By.CSS_SELECTOR, 'svg [id="edge-ci_passed-merged"]')
          and not drv.find_elements(By.CSS_SELECTOR, 'svg [id="edge-ci_passed-merged"].taken'))
    way = wait_for(drv, "the explain panel", lambda d: d.find_elements(By.CSS_SELECTOR, '.way[data-to="approved"].denied'))
    check("the explain panel says the way to approved is blocked, and why", way and "requires" in way[0].text,
          "way: " + (way[0].text if way else "none"))
    shot(drv, "record.png", 2400)

    # A violation stands out, and the forge facts are shown.
    vid = os.environ.get("LF_VIOLATION")
    drv.get(BASE + "/ui/#/record/" + vid)
    viol = wait_for(drv, "the violation", lambda d: d.find_elements(By.CSS_SELECTOR, "li.entry.has-violation .violation"))
    check("a violation stands out in the timeline (.violation), with its rule and reason",
          viol and "workflow:loopforge" in viol[0].text and "Invalid transition: pr_created" in viol[0].text,
          "got: " + (viol[0].text if viol else "none"), *console_errors(drv))
    forge = drv.find_elements(By.CSS_SELECTOR, "section.forge")
    check("the forge facts are shown (the PR and its head)", forge and "#2" in forge[0].text and "ec26c3e57ca3" in forge[0].text,
          "forge: " + (forge[0].text[:300] if forge else "none"))
    shot(drv, "violation.png", 2400)
    oid = os.environ.get("LF_OVERRIDE")
    drv.get(BASE + "/ui/#/record/" + oid)
    ov = wait_for(drv, "the override", lambda d: d.find_elements(By.CSS_SELECTOR, "li.entry.has-override .override"))
    check("a break-glass override stands out in the timeline (.override), with its reason",
          ov and "prod is down" in ov[0].text, "got: " + (ov[0].text if ov else "none"))


def test_pages(drv):
    drv.get(BASE + "/ui/#/workflows")
    wf = wait_for(drv, "the workflows page", lambda d: d.find_elements(By.CSS_SELECTOR, 'section[data-workflow="loopforge"] table.edges tbody tr'))
    check("the workflows page lists loopforge's edges", wf, *console_errors(drv))
    guards = drv.find_elements(By.XPATH, '//section[@data-workflow="loopforge"]//tr[td[1]="awaiting_review" and td[2]="approved"]')
    check("... with the guards on them (no-self-approval on awaiting_review → approved)",
          guards and "no-self-approval" in guards[0].text, "row: " + (guards[0].text if guards else "none"))
    check("... and its graph", wait_for(drv, "the workflow graph", lambda d: d.find_elements(
        By.CSS_SELECTOR, 'section[data-workflow="loopforge"] svg [id="state-issue_created"]')))
    check("every workflow is drawn", wait_for(drv, "every graph", lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "section[data-workflow] figure svg")) == len(d.find_elements(By.CSS_SELECTOR, "section[data-workflow]"))),
        "sections %d, graphs %d" % (len(drv.find_elements(By.CSS_SELECTOR, "section[data-workflow]")),
                                    len(drv.find_elements(By.CSS_SELECTOR, "section[data-workflow] figure svg"))))
    shot(drv, "workflows.png", 2400)
    drv.get(BASE + "/ui/#/health")
    st, body = http("GET", BASE + "/v1/policies")
    gen = json.loads(body)["generation"]
    g = wait_for(drv, "the health page", lambda d: d.find_elements(By.ID, "generation"))
    check("the health page shows the policy generation", g and g[0].text == gen,
          "shown %s, server %s" % (g[0].text if g else None, gen))
    t = drv.find_elements(By.CSS_SELECTOR, 'table[data-metric="loopforge_transitions_total"]')
    check("... and the transitions counter from /metrics", t and "denied" in t[0].text,
          "table: " + (t[0].text if t else "none"))
    v = drv.find_elements(By.CSS_SELECTOR, 'table[data-metric="loopforge_violations_total"] td.num')
    check("... and the violations counter (1)", v and v[0].text == "1", "got: " + (v[0].text if v else "none"))
    shot(drv, "health.png", 1800)


def test_render_5000(drv):
    drv.get(BASE + "/ui/")
    wait_for(drv, "the board", lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))
    r = drv.execute_script("""
        const t0 = performance.now();
        const ms = window.lfConsole.benchRender(5000);
        const t1 = performance.now();
        document.body.getBoundingClientRect(); void document.body.offsetHeight;
        const t2 = performance.now();
        return {build: ms, total: t1 - t0, layout: t2 - t1,
                cards: document.querySelectorAll('.card').length,
                timers: document.querySelectorAll('.card .badge.timer').length};""")
    print("# render 5000 synthetic records: build %.0f ms, with style and layout %.0f ms"
          % (r["build"], r["total"] + r["layout"]), flush=True)
    check("the board renders 5,000 records in under 3 s", r["cards"] == 5000 and r["total"] + r["layout"] < 3000,
          json.dumps(r))
    check("... with the timer badge on the records that have timers (1 in 17)", r["timers"] == len(range(0, 5000, 17)),
          json.dumps(r))


def test_auth(drv):
    base = os.environ.get("LF_AUTH_BASE")
    if not base:
        return
    base = base.rstrip("/")
    tok = os.environ["LF_AUTH_TOKEN"]
    drv.get(base + "/ui/")
    form = wait_for(drv, "#login", lambda d: d.find_elements(By.CSS_SELECTOR, "form#login"))
    check("with tokens configured and none given, the console shows the login form", form,
          "page: " + drv.find_element(By.TAG_NAME, "main").text[:300], *console_errors(drv))
    check("... with a password input named token",
          drv.find_elements(By.CSS_SELECTOR, 'form#login input[type="password"][name="token"]'))
    check("... and no cards", not drv.find_elements(By.CSS_SELECTOR, ".card"))
    shot(drv, "login.png")
    # A wrong token: the form again, still no data.
    inp = drv.find_element(By.CSS_SELECTOR, 'form#login input[name="token"]')
    inp.send_keys("lf_not_a_token")
    drv.find_element(By.CSS_SELECTOR, 'form#login button[type="submit"]').click()
    again = wait_for(drv, "#login again", lambda d: d.find_elements(By.CSS_SELECTOR, "form#login")
                     and "refused" in d.find_element(By.CSS_SELECTOR, "form#login").text)
    check("a wrong token: the login form again, and no cards", again and not drv.find_elements(By.CSS_SELECTOR, ".card"))
    inp = drv.find_element(By.CSS_SELECTOR, 'form#login input[name="token"]')
    inp.send_keys(tok)
    drv.find_element(By.CSS_SELECTOR, 'form#login button[type="submit"]').click()
    want = expected_counts(all_records(base, tok))
    cards = wait_for(drv, "cards after login", lambda d: d.find_elements(By.CSS_SELECTOR, ".card") and counts_match(d, want))
    check("signed in with a read token, the board shows the records", cards,
          "cards: %d" % len(drv.find_elements(By.CSS_SELECTOR, ".card")), *console_errors(drv))
    check("... and the token stays in sessionStorage (lf_token)",
          drv.execute_script("return sessionStorage.getItem('lf_token')") == tok)


def main():
    try:
        drv = make_driver()
    except Exception as e:
        not_ok("chromium starts under chromedriver", repr(e))
        return 1
    try:
        for t in (test_board, test_timer_badge, test_filter, test_live, test_record, test_pages, test_render_5000, test_auth):
            try:
                if t(drv) is False:
                    break
            except Exception:
                not_ok(t.__name__ + " ran to its end", traceback.format_exc())
    finally:
        drv.quit()
    print("# done", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    import urllib.parse  # noqa: E402 (used by all_records)
    sys.exit(main())
