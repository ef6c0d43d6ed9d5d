"""NVFlare verification: every configured site is registered with the server, seen through an admin session.

Usage (the Job's command): python3 nvflare_verify.py KIT_DIR USERNAME SITES_JSON WAIT_SECONDS

Logs in with the verification admin kit in KIT_DIR (its own identity, provisioned with the `member` role:
nvflare's default authorization lets it `view`, i.e. `check_status`, and nothing else), then asks the server
for its registered clients (`check_status server`) until every site in SITES_JSON is there or WAIT_SECONDS
passed. The last line names the sites that never registered.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, NoReturn

POLL_SECONDS = 3.0


def fail(message: str) -> NoReturn:
    print(f"VERIFICATION FAILED: {message}", flush=True)
    sys.exit(1)


def registered(session: Any) -> set[str]:
    info = session.get_system_info()
    return {client.name for client in info.client_info}


def main(kit_dir: str, username: str, sites_json: str, wait_text: str) -> None:
    from nvflare.fuel.flare_api.flare_api import new_secure_session

    sites = set(json.loads(sites_json))
    try:
        session = new_secure_session(username, kit_dir, timeout=float(wait_text))
    except Exception as ex:  # nvflare raises its own types for refused or timed-out logins
        fail(f"could not log in to the server as {username}: {type(ex).__name__}: {ex}")
    print(f"logged in to the server as {username}", flush=True)
    deadline = time.monotonic() + float(wait_text)
    try:
        while True:
            seen = registered(session)
            missing = sorted(sites - seen)
            print(f"registered: {', '.join(sorted(seen)) or 'none'}; waiting for: {', '.join(missing) or 'none'}")
            if not missing:
                break
            if time.monotonic() > deadline:
                fail(
                    f"site(s) {', '.join(missing)} not registered with the server after {wait_text}s "
                    f"(registered: {', '.join(sorted(seen)) or 'none'})"
                )
            time.sleep(POLL_SECONDS)
    finally:
        session.close()
    print(f"VERIFIED: all {len(sites)} sites registered with the server: {', '.join(sorted(sites))}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(f"usage: {sys.argv[0]} KIT_DIR USERNAME SITES_JSON WAIT_SECONDS")
    main(*sys.argv[1:])
