"""Each kind of work goes to its own queue (docs/deploy.md lists a worker per queue)."""

from pathlib import Path

import pytest

from billing_portal.celery import app

QUEUE_OF = {
    "metering.reevaluate_pending": "ingest",
    "metering.finalize_windows": "ingest",
    "billing.run_billing": "billing",
    "billing.tasks.payment_collect_due": "payments",
    "billing.tasks.payment_collect_invoice": "payments",
    "billing.tasks.payment_process_webhook": "payments",
    "operations.heartbeat": "billing",
}


@pytest.mark.parametrize(("task", "queue"), QUEUE_OF.items())
def test_task_is_routed_to_its_queue(task, queue):
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue


def test_every_task_of_ours_has_a_queue_named_in_the_procfile():
    app.loader.import_default_modules()
    ours = [name for name in app.tasks if not name.startswith("celery.")]
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    for name in ours:
        queue = app.amqp.router.route({}, name)["queue"].name
        assert f"-Q {queue} " in procfile, (name, queue)
