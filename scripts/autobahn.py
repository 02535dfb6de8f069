#!/usr/bin/env python3
"""Runs Autobahn TestSuite cases (through kosoku, the suite as a client) against
a WebSocket echo endpoint and judges every case: a case passes when the suite's
verdicts (behavior and close) are OK or INFORMATIONAL, or, for a case named by
--too-big (a message over the gateway's limit), when the gateway closed it with
1009. Anything else is a failure: NON-STRICT too (Autobahn counts it a pass; a
missed SHOULD, such as failing fast on bad UTF-8, is a regression here), and a
--too-big case that was echoed.

Writes a per-case summary to --summary and exits 1 on any failure.
Called by scripts/autobahn.sh; see docs/security.md "WebSocket conformance".
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import sys
from collections import OrderedDict

from kosoku import FailureError, run_fuzzingclient

TOO_BIG = 1009
NON_STRICT = "NON-STRICT"


def case_key(case_id: str) -> list[int]:
    return [int(part) if part.isdigit() else 0 for part in case_id.split(".")]


def judge(result, too_big: list[str]) -> tuple[bool, str]:
    """Whether the case is as expected, and why."""
    code = result.remote_close_code
    if any(fnmatch.fnmatchcase(result.case_id, glob) for glob in too_big):
        if code == TOO_BIG and not result.passed:
            return True, "closed 1009 (over the message limit, expected)"
        return False, f"expected a 1009 close (over the limit), got close {code}"
    if not result.passed:
        return False, f"{result.result} {result.result_close}".strip()
    if NON_STRICT in (result.behavior.value, result.behavior_close.value):
        return False, "NON-STRICT: a SHOULD of RFC 6455 missed (Autobahn passes it; we do not)"
    return True, "pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws://127.0.0.1:PORT/v1/_echo")
    parser.add_argument("--label", required=True, help="name of this run in the summary")
    parser.add_argument("--include", action="append", required=True, metavar="GLOB")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    parser.add_argument("--too-big", action="append", default=[], metavar="GLOB")
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--summary", required=True, help="file to append the summary to")
    parser.add_argument("--reports", help="directory for kosoku's HTML/JSON reports")
    args = parser.parse_args()

    try:
        results = asyncio.run(
            run_fuzzingclient(
                args.url, args.include, args.exclude, concurrency=args.parallelism
            )
        )
    except FailureError as failure:
        results = failure.results
    results = sorted(results, key=lambda r: case_key(r.case_id))
    if args.reports:
        try:  # kosoku's own report writer (not part of its public API): best effort
            from kosoku._report import write_reports

            write_reports(results, args.reports)
        except Exception as e:  # noqa: BLE001 - the summary below is what counts
            print(f"autobahn: no HTML reports ({e})", file=sys.stderr)

    lines = [f"## {args.label}: {args.url}", ""]
    groups: OrderedDict[str, list[int]] = OrderedDict()
    failures = []
    for r in results:
        ok, why = judge(r, args.too_big)
        group = groups.setdefault(r.case_id.split(".")[0], [0, 0, 0])
        group[0] += 1
        if ok and why == "pass":
            group[1] += 1
        elif ok:
            group[2] += 1
        else:
            failures.append(r.case_id)
        lines.append(
            f"{r.case_id:<8} {'ok  ' if ok else 'FAIL'} {r.behavior.value:<13} "
            f"{r.behavior_close.value:<13} close={r.remote_close_code} {why}"
        )
    lines += ["", "| Group | Cases | Passed | Closed 1009 (over the limit) |", "| --- | --- | --- | --- |"]
    lines += [f"| {g} | {n} | {p} | {b} |" for g, (n, p, b) in groups.items()]
    if not results:
        failures.append("(no case ran: is the echo endpoint up?)")
    verdict = "all as expected" if not failures else f"{len(failures)} FAILED: {' '.join(failures)}"
    lines += ["", f"{args.label}: {len(results)} cases, {verdict}", "", ""]
    text = "\n".join(lines)
    with open(args.summary, "a", encoding="utf-8") as out:
        out.write(text)
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
