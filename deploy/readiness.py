"""Readiness of one web pod: the web chart's exec probe (deploy/chart/templates/web.yaml).

``/readyz`` answers 503 when any check fails, the control loop's included: a loop that has not
ticked for a few intervals is the workers' or beat's failure, and a readiness probe on /readyz
would then take every web pod out of service, hiding the dashboard and API that show the outage.
This asks /readyz and fails only for this pod's own dependencies (database, broker, channel
layer). Standard library only: it runs as a fresh interpreter every probe period.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys

# Checks a web pod is not to blame for: another process's work.
NOT_THIS_POD = frozenset({"control_loop"})


def verdict(status: int, body: bytes) -> tuple[bool, str]:
    """Whether /readyz's answer means this pod can serve, and why not."""
    if status == 200:
        return True, "ready"
    try:
        failing = json.loads(body)["failing"]
    except (ValueError, KeyError, TypeError):
        return False, f"/readyz answered {status} without its JSON report"
    if status != 503 or not isinstance(failing, list):
        return False, f"/readyz answered {status}"
    own = [name for name in failing if name not in NOT_THIS_POD]
    if own:
        return False, f"failing: {', '.join(own)}"
    return True, f"ready (not this pod's: {', '.join(failing)} failing)"


def probe(host: str, port: int, timeout_s: float) -> tuple[bool, str]:
    # Django checks the Host header against ALLOWED_HOSTS, which admits the pod's IP.
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", "/readyz", headers={"Host": f"{host}:{port}"})
        response = connection.getresponse()
        return verdict(response.status, response.read())
    except OSError as exc:
        return False, f"/readyz unreachable: {exc}"
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("POD_IP") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--timeout", type=float, default=6.0)
    args = parser.parse_args(argv)
    ready, reason = probe(args.host, args.port, args.timeout)
    print(reason)  # the kubelet shows it in the pod's events when the probe fails
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
