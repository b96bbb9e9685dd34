"""Text rendering of conformance reports: one runtime, or two side by side."""

import collections
import json
import shutil

ORDER = ["fail", "error", "xpass", "xfail", "skip", "pass"]


def _req(entry):
    reqs = entry.get("requirements") or []
    return reqs[0]["ref"] if reqs else "-"


def _short(test):
    return test.split("::", 1)[-1]


def _clip(s, n):
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def format_table(results, runtime):
    width = max(shutil.get_terminal_size((220, 20)).columns, 220)
    rw, tw, ow = 40, 56, 6
    why_w = max(width - rw - tw - ow - len(runtime) - 4, 90)
    head = f"{'requirement':<{rw}} {'test':<{tw}} {'runtime':<{len(runtime)}} {'result':<{ow}} why"
    lines = [head, "-" * min(width, len(head) + why_w)]
    for e in sorted(results, key=lambda e: (_req(e), e["test"])):
        lines.append(f"{_clip(_req(e), rw):<{rw}} {_clip(_short(e['test']), tw):<{tw}} "
                     f"{runtime} {e['result']:<{ow}} {_clip(e.get('reason', ''), why_w)}")
    return lines


def counts(results):
    c = collections.Counter(e["result"] for e in results)
    return "totals: " + ", ".join(f"{k} {c[k]}" for k in ORDER if c[k]) + f" (of {len(results)})"


def compare(path_a, path_b):
    """Print two JSON reports side by side; return the number of differing rows."""
    with open(path_a) as f:
        a = json.load(f)
    with open(path_b) as f:
        b = json.load(f)
    na, nb = a.get("runtime_name", "A"), b.get("runtime_name", "B")
    if na == nb:
        na, nb = na + "(A)", nb + "(B)"
    ra = {e["test"]: e for e in a["results"]}
    rb = {e["test"]: e for e in b["results"]}
    rw, tw = 40, 56
    print(f"{'requirement':<{rw}} {'test':<{tw}} {na:<10} {nb:<10} note")
    print("-" * 130)
    diff = 0
    for t in sorted(set(ra) | set(rb), key=lambda t: (_req(ra.get(t) or rb[t]), t)):
        ea, eb = ra.get(t), rb.get(t)
        sa = ea["result"] if ea else "-"
        sb = eb["result"] if eb else "-"
        note = ""
        if "-" in (sa, sb):
            note = "not run in " + (na if sa == "-" else nb)
        elif sa != sb:
            diff += 1
            why = (eb or {}).get("reason") if sb not in ("pass", "-") else (ea or {}).get("reason")
            note = "DIFF " + _clip(why or "", 60)
        print(f"{_clip(_req(ea or eb), rw):<{rw}} {_clip(_short(t), tw):<{tw}} {sa:<10} {sb:<10} {note}")
    print(f"{na}: {counts(a['results'])}")
    print(f"{nb}: {counts(b['results'])}")
    print(f"{diff} tests differ")
    return diff
