"""FATE's toy example between the parties, as a verification: exits 0 only when the job succeeded on every party.

Run from the initiating (guest) party's namespace. Only the Python standard library: it runs in the fateflow
image, whose `flow` CLI would need a writable package directory (`flow init`).

1. Every party answers through the proxies: `GET /v2/site/info/query` with `dest-party-id` to the guest's proxy,
   which carries it to that party's fate_flow (its own over plain HTTP, the others' over mutual TLS).
2. One toy job per host, submitted to the guest's fate_flow (the DAG `flow test toy -gid G -hid H` submits).
3. Each job is queried on each of its parties' own fate_flow, through the proxy, until it succeeds on both; a
   party where it fails, or a deadline, ends the check with the party named.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DONE_BAD = {"failed", "canceled", "timeout"}
POLL_SECONDS = 3


class CheckError(Exception):
    pass


def toy_dag(guest: str, host: str) -> dict[str, Any]:
    """fate_client 2.2.0's `Test.toy_conf`: the toy_example component between one guest and one host."""
    return {
        "dag": {
            "parties": [{"party_id": [guest], "role": "guest"}, {"party_id": [host], "role": "host"}],
            "stage": "default",
            "tasks": {
                "toy_example_0": {"component_ref": "toy_example", "parameters": {"data_num": 1024, "partition": 4}}
            },
        },
        "schema_version": "2.0.0.alpha",
    }


def call(url: str, party: str | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One fate_flow API call; `party`: sent as `dest-party-id`, so the proxy routes it to that party."""
    headers = {"Content-Type": "application/json"}
    if party is not None:
        headers["dest-party-id"] = party
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            reply: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip()[:200]
        raise CheckError(f"HTTP {e.code} from {url}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CheckError(f"{url} unreachable: {getattr(e, 'reason', e)}") from None
    except ValueError:
        raise CheckError(f"{url} answered something other than JSON") from None
    return reply


def reach(proxy: str, party: str, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            reply = call(f"{proxy}/v2/site/info/query", party)
            answered = str(reply.get("data", {}).get("party_id"))
            if reply.get("code") == 0 and answered == party:
                print(f"party {name}: fate_flow answers through the proxies", flush=True)
                return
            problem = f"answered as party {answered!r} (code {reply.get('code')}, {reply.get('message')!r})"
        except CheckError as e:
            problem = str(e)
        if time.monotonic() > deadline:
            raise CheckError(f"party {name}: its fate_flow does not answer through the proxies: {problem}")
        time.sleep(POLL_SECONDS)


def submit(flow: str, guest: str, host: str, host_name: str) -> str:
    reply = call(f"{flow}/v2/job/submit", body={"dag_schema": toy_dag(guest, host)})
    job_id = reply.get("job_id") or reply.get("data", {}).get("job_id")
    if reply.get("code") != 0 or not job_id:
        raise CheckError(f"the toy job with party {host_name} was refused: {reply.get('message')!r} ({reply})")
    print(f"toy job {job_id}: submitted, guest {guest}, host {host_name}", flush=True)
    return str(job_id)


def status(proxy: str, job_id: str, role: str, party: str) -> str:
    query = urllib.parse.urlencode({"job_id": job_id, "role": role, "party_id": party})
    reply = call(f"{proxy}/v2/job/query?{query}", party)
    rows = reply.get("data") or []
    return str(rows[0]["status"]) if reply.get("code") == 0 and rows else "not created"


def wait(proxy: str, jobs: dict[str, list[tuple[str, str, str]]], seconds: float) -> None:
    """Until every (job, party) is `success`; jobs: job id -> [(role, party id, party name)]."""
    deadline = time.monotonic() + seconds
    pending = {(job, role, party, name) for job, parties in jobs.items() for role, party, name in parties}
    last: dict[tuple[str, str, str, str], str] = {}
    while pending:
        for key in sorted(pending):
            job, role, party, name = key
            try:
                now = status(proxy, job, role, party)
            except CheckError as e:
                now = f"unknown ({e})"
            if now != last.get(key):
                print(f"toy job {job} on party {name} ({role}): {now}", flush=True)
                last[key] = now
            if now == "success":
                pending.discard(key)
            elif now in DONE_BAD:
                raise CheckError(f"toy job {job} {now} on party {name} ({role}): see that party's fate_flow logs")
        if not pending:
            return
        if time.monotonic() > deadline:
            where = ", ".join(f"party {n} ({r}) {last.get((j, r, p, n))}" for j, r, p, n in sorted(pending))
            raise CheckError(f"the toy example did not finish within {seconds:.0f} s: {where}")
        time.sleep(POLL_SECONDS)


def party(value: str) -> tuple[str, str]:
    """`ID=NAME`: the party id, and how messages name it (its namespace)."""
    party_id, _, name = value.partition("=")
    return party_id, f"{party_id} ({name})" if name else party_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", required=True, help="the guest's fate_flow, e.g. http://fateflow:9380")
    parser.add_argument("--proxy", required=True, help="the guest's proxy (plain HTTP port), e.g. http://proxy:9300")
    parser.add_argument("--guest", required=True, type=party, help="ID=NAMESPACE of the initiating party")
    parser.add_argument("--host", required=True, type=party, action="append", help="ID=NAMESPACE, once per host")
    parser.add_argument("--reach-seconds", type=float, default=30, help="how long every party may take to answer")
    parser.add_argument("--timeout", type=float, default=900, help="how long the toy jobs may take")
    args = parser.parse_args(argv)
    (guest, guest_name), hosts = args.guest, args.host
    try:
        for party_id, name in [(guest, guest_name), *hosts]:
            reach(args.proxy, party_id, name, args.reach_seconds)
        jobs = {
            submit(args.flow, guest, host, host_name): [("guest", guest, guest_name), ("host", host, host_name)]
            for host, host_name in hosts
        }
        wait(args.proxy, jobs, args.timeout)
    except CheckError as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    parties = ", ".join(name for _, name in [(guest, guest_name), *hosts])
    print(f"OK: the toy example succeeded on every party: {parties}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
