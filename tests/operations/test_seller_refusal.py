"""No production process starts with the seller's tax settings incomplete or malformed (issue 25,
item 1): the system check (tax.E001...) ran only on `manage.py check`, `migrate` and
`runserver`, so gunicorn, a worker or beat started and printed an empty legal name, or a VAT id
that is not one, on every invoice. The same refusal as a weak SECRET_KEY's
(test_secret_key_refusal.py), DEBUG or not; the default seller's processes starting is
test_secret_key_refusal.py's `test_a_good_secret_key_starts_each_process`.
"""

import subprocess
import sys
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from billing_portal.startup import exit_on_incomplete_seller, refuse_incomplete_seller
from tests.operations.test_secret_key_refusal import (
    GOOD_KEY,
    REFUSED_WITHIN,
    ROOT,
    command,
    process_env,
    stop,
)
from tests.stripe_standin import free_port

EMPTY_NAME = "TAX_SELLER_LEGAL_NAME is empty: every invoice names its seller."
BAD_VAT_ID = "TAX_SELLER_VAT_ID: FR11123456783 is not a valid VAT id: its check digits do not match"


def test_a_complete_seller_starts(eu_seller):
    refuse_incomplete_seller()  # the demo's seller, the settings' default
    eu_seller.TAX_SELLER_COUNTRY = "US"
    eu_seller.TAX_SELLER_VAT_ID = ""  # an American seller has no EU VAT id to check
    refuse_incomplete_seller()


def test_every_problem_is_named_on_one_line(eu_seller):
    eu_seller.TAX_SELLER_LEGAL_NAME = ""
    eu_seller.TAX_SELLER_VAT_ID = "FR11123456783\n"  # as typed, with a stray line end
    eu_seller.DEBUG = True  # the demo would print the same invoices
    with pytest.raises(ImproperlyConfigured) as refused:
        refuse_incomplete_seller()
    said = str(refused.value)
    assert said.startswith(f"{EMPTY_NAME} {BAD_VAT_ID}")
    assert said.endswith("See docs/tax.md, 'What a deployment configures'.")
    assert "\n" not in said


def test_us_states_are_read_from_the_packaged_rates_without_a_database(eu_seller):
    eu_seller.TAX_SELLER_US_STATES = ["WA", "TX"]
    with pytest.raises(ImproperlyConfigured, match="names TX, which has no rate in force in "):
        refuse_incomplete_seller()


def test_an_entry_point_exits_with_one_line(eu_seller):
    eu_seller.TAX_SELLER_LEGAL_NAME = " "
    with pytest.raises(SystemExit) as exited:
        exit_on_incomplete_seller()
    assert str(exited.value.code).startswith(f"Refusing to start: {EMPTY_NAME}")


# Each process with a bad seller (from the environment, as a deployment sets it) and a good
# key: gunicorn with its config file (the master refuses), any server importing the WSGI or ASGI
# application bare, and a worker, in DEBUG to show it does not matter.
PROCESSES: dict[str, tuple[dict[str, str], str]] = {
    "gunicorn": ({"TAX_SELLER_VAT_ID": "FR11123456783"}, BAD_VAT_ID),
    "wsgi": ({"TAX_SELLER_VAT_ID": "FR11123456783"}, BAD_VAT_ID),
    "asgi": ({"TAX_SELLER_LEGAL_NAME": ""}, EMPTY_NAME),
    "worker": ({"TAX_SELLER_LEGAL_NAME": "", "DEBUG": "true"}, EMPTY_NAME),
}


@pytest.mark.clock_free
def test_a_bad_seller_stops_each_process_before_it_serves(tmp_path):
    started = time.monotonic()
    processes = {}
    try:
        for kind, (seller, _) in PROCESSES.items():  # side by side: each only imports and exits
            if kind in ("wsgi", "asgi"):
                argv, extra = [sys.executable, "-c", f"import billing_portal.{kind}"], {}
            else:
                argv, extra = command(kind, tmp_path, free_port())
            processes[kind] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=process_env(tmp_path, GOOD_KEY, **extra, **seller),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for kind, process in processes.items():
            left = started + REFUSED_WITHIN - time.monotonic()
            try:
                out, err = process.communicate(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{kind} with a bad seller still runs after {REFUSED_WITHIN} s")
            said = PROCESSES[kind][1]
            assert process.returncode == 1, (kind, out, err)
            if kind in ("wsgi", "asgi"):
                # A server reports the import's exception its own way (gunicorn: "Worker failed
                # to boot"); the reason is its last line.
                assert f"ImproperlyConfigured: {said}" in err.splitlines()[-1], (kind, err)
                continue
            assert f"Refusing to start: {said}" in err, (kind, err)
            assert "Traceback" not in err and "Booting worker" not in err + out
            assert " ready." not in out + err  # a worker never got as far as consuming
    finally:
        for process in processes.values():
            stop(process)
    print(f"{len(processes)} refusals in {time.monotonic() - started:.1f} s")
