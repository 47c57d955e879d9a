"""The re-evaluation queue drained without evaluating anything: `bench/ingest.py --evaluation
none` runs this in place of the Celery workers, to measure what the ingest path costs when
re-evaluation is free (the most any re-evaluation design could leave to it on this machine).

Each process claims and clears queued subjects the way a worker does (the same claim and finish
statements), and writes no charge. Started with the number of processes; prints "… ready." once
they are up.
"""

import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def drain(ready) -> None:
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from metering import event_store
    from metering.services import LEASE, REEVALUATION_BATCH

    ready.wait()
    while True:
        now = timezone.now()
        claims = event_store.claim_reevaluations(
            REEVALUATION_BATCH, now=now, stale_before=now - LEASE
        )
        if not claims:
            time.sleep(0.05)
            continue
        with transaction.atomic():
            event_store.finish_reevaluations(claims, done=True)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    count = int(sys.argv[1])
    ready = multiprocessing.Barrier(count + 1)
    processes = [multiprocessing.Process(target=drain, args=(ready,)) for _ in range(count)]

    def stop(*_) -> None:  # the bench ends us with SIGTERM: end the drainers too
        for process in processes:
            process.terminate()
        sys.exit(0)

    for process in processes:
        process.start()
    signal.signal(signal.SIGTERM, stop)  # after the forks: the drainers keep the default
    ready.wait()
    print(f"{count} drainers ready.", flush=True)  # the bench waits for " ready."
    for process in processes:
        process.join()


if __name__ == "__main__":
    main()
