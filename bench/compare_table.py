#!/usr/bin/env python3
"""Side-by-side table of switchboard-bench reports from one bench/compare.sh run.

    python3 bench/compare_table.py fanout|idle|ramp RESULTS_DIR RUN_TAG

Reads RESULTS_DIR/*-RUN_TAG.json, groups them by server (report field
server.kind; absent means Switchboard), transport and rate, and prints one
column per server. Cost figures also show their ratio to Switchboard's
(e.g. "52.0 (5.8x)": 5.8 times Switchboard's cost).
"""

import glob
import json
import os
import sys

ORDER = ["switchboard", "pushpin", "nchan"]


def load(results, tag):
    reports = []
    for path in sorted(glob.glob(os.path.join(results, f"*-{tag}.json"))):
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        if r.get("tool") != "switchboard-bench":
            continue
        r["_kind"] = (r.get("server") or {}).get("kind") or "switchboard"
        reports.append(r)
    return reports


def order_key(kv):
    """Groups in a steady order: WebSocket before SSE, then by the rest."""
    transport = kv[0][0]
    return ({"ws": 0, "sse": 1}.get(transport, 2), str(kv[0]))


def servers_of(reports):
    kinds = {r["_kind"] for r in reports}
    return [k for k in ORDER if k in kinds] + sorted(kinds - set(ORDER))


def num(x, places=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{places}f}"
    return f"{int(x):,}"


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def with_ratio(x, base, places=1):
    """`x`, and x/base when both are known (base None: Switchboard's own column)."""
    s = num(x, places)
    if x is None or base is None or base == 0:
        return s
    return f"{s} ({x / base:.1f}x)"


def get(r, *path):
    for p in path:
        if not isinstance(r, dict):
            return None
        r = r.get(p)
    return r


def print_table(title, cols, rows):
    """rows: (label, [cell per column])."""
    widths = [max(len(title), *(len(label) for label, _ in rows))]
    for i, c in enumerate(cols):
        widths.append(max(len(c), *(len(cells[i]) for _, cells in rows)))
    line = lambda cells: "  ".join(  # noqa: E731
        [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
    )
    print(line([title] + cols))
    print(line(["-" * w for w in widths]))
    for label, cells in rows:
        print(line([label] + cells))
    print()


def fanout(reports):
    groups = {}
    for r in reports:
        if r.get("mode") != "publish":
            continue
        key = (r.get("transport"), r.get("subscribers"), get(r, "summary", "rate"))
        groups.setdefault(key, {})[r["_kind"]] = r
    for (transport, subs, rate), by in sorted(groups.items(), key=order_key):
        cols = servers_of(by.values())
        base = by.get("switchboard")

        def row(label, f, ratio=False, places=1):
            b = f(base) if base is not None else None
            cells = []
            for k in cols:
                v = f(by[k])
                cells.append(with_ratio(v, b if k != "switchboard" else None, places) if ratio else num(v, places))
            return (label, cells)

        rows = [
            row("connected", lambda r: get(r, "summary", "connected")),
            row("publish msg/s achieved", lambda r: get(r, "publish", "rate_achieved")),
            row("deliveries/s offered", lambda r: get(r, "summary", "offered_deliveries_per_sec")),
            row("deliveries/s", lambda r: get(r, "summary", "deliveries_per_sec")),
            row("lost", lambda r: get(r, "summary", "lost")),
            ("latency p50 ms", [ms(get(by[k], "summary", "p50_us")) for k in cols]),
            ("latency p99 ms", [ms(get(by[k], "summary", "p99_us")) for k in cols]),
            ("latency max ms", [ms(get(by[k], "summary", "max_us")) for k in cols]),
            row("server CPU % of a core", lambda r: get(r, "server", "cpu_percent")),
            row("server CPU µs/delivery", lambda r: get(r, "summary", "server_cpu_us_per_delivery"), True, 2),
            row("server RSS KiB/conn", lambda r: get(r, "summary", "rss_per_conn_kib"), True, 2),
            row("loadgen CPU µs/delivery", lambda r: get(r, "summary", "loadgen_cpu_us_per_delivery"), True, 2),
            ("verdict", [str(get(by[k], "summary", "verdict")) for k in cols]),
        ]
        if any(get(by[k], "server", "origin") for k in cols):
            rows.insert(
                10,
                ("origin CPU % (apart)", [num(get(by[k], "server", "origin", "cpu_percent")) for k in cols]),
            )
        print_table(f"fanout {transport} x{subs}, {num(rate)} msg/s", cols, rows)


def idle(reports):
    groups = {}
    for r in reports:
        if r.get("mode") != "idle":
            continue
        groups.setdefault((r.get("transport"), r.get("subscribers")), {})[r["_kind"]] = r
    for (transport, n), by in sorted(groups.items(), key=order_key):
        cols = servers_of(by.values())
        base = get(by.get("switchboard"), "summary", "rss_per_conn_kib")
        rows = [
            ("connected", [num(get(by[k], "summary", "connected")) for k in cols]),
            ("connect seconds", [num(get(by[k], "connect", "seconds"), 2) for k in cols]),
            (
                "server RSS KiB/conn",
                [
                    with_ratio(v, base if k != "switchboard" else None, 2)
                    for k in cols
                    for v in [get(by[k], "summary", "rss_per_conn_kib")]
                ],
            ),
            ("server RSS before KiB", [num(get(by[k], "server", "rss_before_kib")) for k in cols]),
            ("server RSS idle KiB", [num(get(by[k], "server", "rss_idle_kib")) for k in cols]),
            ("server processes", [str(len(p)) if isinstance(p := get(by[k], "server", "pid"), list) else "1" for k in cols]),
            ("server CPU % holding", [num(get(by[k], "server", "cpu_percent")) for k in cols]),
        ]
        print_table(f"idle {transport} x{num(n)}", cols, rows)


def ramp(reports):
    groups = {}
    for r in reports:
        if r.get("mode") != "publish":
            continue
        groups.setdefault((r.get("transport"), r.get("subscribers")), []).append(r)
    for (transport, subs), rs in sorted(groups.items(), key=order_key):
        cols = servers_of(rs)
        by = {(r["_kind"], get(r, "summary", "rate")): r for r in rs}
        rates = sorted({get(r, "summary", "rate") for r in rs}, key=lambda x: x or 0)
        rows = []
        for rate in rates:
            cells = []
            for k in cols:
                r = by.get((k, rate))
                if r is None:
                    cells.append("")
                    continue
                s = r["summary"]
                cells.append(
                    f"{num(s.get('deliveries_per_sec'), 0)} d/s, p99 {ms(s.get('p99_us'))} ms, "
                    f"{num(s.get('server_cpu_us_per_delivery'), 2)} µs, {s.get('verdict')}"
                )
            rows.append((f"{num(rate)} msg/s", cells))
        best = {}
        for k in cols:
            ok = [
                get(r, "summary", "deliveries_per_sec") or 0
                for (kk, _), r in by.items()
                if kk == k and get(r, "summary", "verdict") == "ok"
            ]
            best[k] = max(ok) if ok else None
        base = best.get("switchboard")
        rows.append(
            (
                "max sustained deliveries/s",
                [with_ratio(best[k], base if k != "switchboard" else None, 0) for k in cols],
            )
        )
        print_table(f"fanout ramp {transport} x{subs}", cols, rows)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("fanout", "idle", "ramp"):
        sys.exit(__doc__.strip().split("\n\n")[1])
    scenario, results, tag = sys.argv[1:]
    reports = load(results, tag)
    if not reports:
        sys.exit(f"no reports tagged {tag} in {results}")
    {"fanout": fanout, "idle": idle, "ramp": ramp}[scenario](reports)


if __name__ == "__main__":
    main()
