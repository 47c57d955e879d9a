"""Run localstripe, the Stripe stand-in, on loopback with a private store file.

localstripe's own CLI listens on every interface and keeps its store in a fixed file shared by
every instance (/tmp/localstripe.pickle). Tests start one instance per worker and the demo one
of its own, so this launcher binds 127.0.0.1 and points the store at a file of our choosing.
localstripe (GPL-3.0) runs as a separate process; none of its code is copied here.

    python scripts/localstripe_server.py --port 8420 --store var/localstripe.pickle [--from-scratch]
    python scripts/localstripe_server.py --port 8420 --in-memory     # the tests' stand-ins

localstripe writes its whole store to disk after every write, so each request costs in
proportion to everything stored before it; the tests' stand-ins, which start empty and are never
restarted, keep it in memory (the chaos suite's thousands of invoices took minutes per hundred).
"""

import argparse
import logging
import pickle
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=Path, help="Private pickle file for the store.")
    where.add_argument(
        "--in-memory", action="store_true", help="Keep the store in memory only (starts empty)."
    )
    parser.add_argument(
        "--from-scratch", action="store_true", help="Ignore an existing store file."
    )
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources, server

    store_path: Path | None = args.store

    def load(store) -> None:
        if store_path.exists():
            with store_path.open("rb") as f:
                saved = pickle.load(f)  # noqa: S301 - our own file, written below
            store.clear()
            store.update(saved)

    def dump(store) -> None:
        tmp = store_path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(store_path)  # a reader never sees a half-written store

    if args.in_memory:
        resources.Store.try_load_from_disk = lambda store: None
        resources.Store.dump_to_disk = lambda store: None
    else:
        resources.Store.try_load_from_disk = load
        resources.Store.dump_to_disk = dump
        store_path.parent.mkdir(parents=True, exist_ok=True)
        if not args.from_scratch:
            resources.store.try_load_from_disk()

    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
