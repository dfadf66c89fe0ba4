"""``python -m simulator --port 9400 [--config fleet.json] [--speed 1.0] [--host 127.0.0.1]``"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from simulator.config import ConfigError, load_config
from simulator.server import Fleet, FleetServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--config", default=None, help="fleet JSON (default: the demo fleet)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated s per wall s")
    parser.add_argument("--tick", type=float, default=0.1, help="wall seconds between steps")
    args = parser.parse_args(argv)
    if args.speed <= 0 or args.tick <= 0:
        parser.error("--speed and --tick must be positive")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    fleet = Fleet(config, speed=args.speed, tick_s=args.tick)
    try:
        server = FleetServer((args.host, args.port), fleet)
    except OSError as exc:  # port taken (another simulator?), or a host not on this machine
        print(
            f"simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    fleet.start()
    host, port = server.server_address[:2]
    names = ", ".join(fleet.clusters)
    print(
        f"simulator: serving {names} on http://{host!s}:{port}/ (speed {args.speed}x)", flush=True
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
