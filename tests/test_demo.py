"""The demo as a newcomer runs it: `scripts/demo.py` (what `make demo` calls) on free ports, the
README's commands beside it, the demo clock, the sent-mail page."""

import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe
import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from billing.models import Invoice
from billing_portal import demo_clock
from tests.stripe_standin import free_port

ROOT = Path(__file__).resolve().parent.parent


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The shell of someone who just cloned: no database configured, the demo's env file."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    env["DEMO_ENV_FILE"] = str(tmp_path / "env.demo")
    return env


def demo_start(
    tmp_path: Path,
    *,
    port: int,
    stripe_port: int,
    shopify_port: int | None = None,
    vies_port: int | None = None,
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "scripts/demo.py",
            "--port",
            str(port),
            "--stripe-port",
            str(stripe_port),
            "--shopify-port",
            str(shopify_port or free_port()),
            "--vies-port",
            str(vies_port or free_port()),
            "--var",
            str(tmp_path / "var"),
        ],
        cwd=ROOT,
        env=demo_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


class Output:
    """A running demo's output, read as it comes (it prints the logins once ready)."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(
            target=lambda: self.lines.extend(process.stdout), daemon=True
        )
        self.thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)


def wait_for(url: str, *, seconds: float, process: subprocess.Popen, output: Output) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, output.text
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return response.status
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def browser_log_in(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    """A browser's cookie jar after the login form: what a person has after logging in."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    form = opener.open(f"{base}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    fields = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    opener.open(f"{base}/login/", urllib.parse.urlencode(fields).encode()).read()
    return opener


# The demo runs in its own processes on the real clock: moving this process' clock changes
# nothing it checks.
@pytest.mark.clock_free
def test_demo_serves_on_the_ports_asked_and_fast_forwards_to_a_paid_invoice(tmp_path):
    port, stripe_port, shopify_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    demo = demo_start(tmp_path, port=port, stripe_port=stripe_port, shopify_port=shopify_port)
    output = Output(demo)
    try:
        assert wait_for(f"{base}/login/", seconds=240, process=demo, output=output) == 200
        settings_file = (tmp_path / "env.demo").read_text()
        assert f"SITE_URL={base}" in settings_file
        assert f"STRIPE_API_BASE=http://127.0.0.1:{stripe_port}" in settings_file
        assert f"SHOPIFY_ADMIN_URL=http://127.0.0.1:{shopify_port}/{{shop}}/admin/" in settings_file
        shopify_health = f"http://127.0.0.1:{shopify_port}/_standin/health"
        assert wait_for(shopify_health, seconds=10, process=demo, output=output) == 200
        # What a newcomer needs, printed at start: where to go and as whom.
        for printed in (
            f"Merchant's Billing & Usage page: {base}/billing/demo-store/",
            f"Operator console: {base}/console/",
            f"Sent mail: {base}/demo/mail/",
            "agent (looks, changes nothing): agent@demo.example / ",
            "Partner API key: bpk_",
        ):
            assert printed in output.text
        password = re.search(r"owner: merchant@demo\.example / (\S+)", output.text).group(1)
        merchant = browser_log_in(base, "merchant@demo.example", password)
        assert merchant.open(f"{base}/billing/demo-store/").url.endswith("/billing/demo-store/")

        # The README's operator command, pasted as printed, talks to the demo's stand-in.
        billing = manage(tmp_path, "run_billing")
        assert billing.returncode == 0, billing.stderr
        assert "api.stripe.com" not in billing.stdout + billing.stderr
        assert "No hostname was supplied" not in billing.stdout + billing.stderr

        started = datetime.now(UTC)
        advanced = manage(tmp_path, "demo_advance", "--days", "31")
        assert advanced.returncode == 0, advanced.stderr
        assert "(+31 days)" in advanced.stdout
        # A month later the demo store's current period has closed and its invoice is paid.
        new_invoices = [line for line in advanced.stdout.splitlines() if "demo-store" in line]
        assert new_invoices and all(line.endswith("paid") for line in new_invoices), advanced.stdout
        assert any((tmp_path / "var" / "mail").glob("*.log"))  # mail where the README says
        # The French seller's USD invoice states its VAT in euros too, at an ECB rate the
        # stand-in dated by the demo's clock (loaded by the advance): never "rate unavailable".
        with sqlite3.connect(tmp_path / "var" / "db.sqlite3") as db:
            (decision,) = db.execute(
                "SELECT i.tax_decision FROM billing_invoice i JOIN accounts_account a "
                "ON a.id = i.account_id WHERE a.slug = 'demo-store' AND a.currency = 'USD' "
                "AND i.tax_treatment = 'domestic' ORDER BY i.id DESC LIMIT 1"
            ).fetchone()
        assert json.loads(decision)["vat_national"]["rate"]["currency"] == "USD"

        # A second advance moves the clock 31 days more, not 62: the clock file says 62 days.
        again = manage(tmp_path, "demo_advance", "--days", "31")
        assert again.returncode == 0, again.stderr
        offset = demo_clock.offset_read(tmp_path / "var" / "demo-clock")
        assert offset == timedelta(days=62)
        shown = re.search(r"now reads (\S+ \S+) UTC", again.stdout).group(1)
        clock = datetime.strptime(shown, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert started + offset - timedelta(minutes=1) <= clock <= datetime.now(UTC) + offset
        # The merchant who logged in before both advances is still logged in.
        assert merchant.open(f"{base}/billing/demo-store/").url.endswith("/billing/demo-store/")
    finally:
        demo.terminate()
        demo.wait(timeout=60)
        output.thread.join(timeout=10)
    assert f"Demo ready at {base}" in output.text
    # Stopping the demo stops its stand-in and server: nothing answers on their ports.
    for stopped in (port, stripe_port, shopify_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", stopped), timeout=2).close()


@pytest.mark.parametrize("which", ["STRIPE_PORT", "SHOPIFY_PORT", "VIES_PORT"])
def test_demo_refuses_a_port_that_is_taken_and_says_which(tmp_path, which):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = {
            "stripe_port": free_port(),
            "shopify_port": free_port(),
            "vies_port": free_port(),
        }
        ports[which.lower()] = taken
        demo = demo_start(tmp_path, port=free_port(), **ports)
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 2
    assert f"Port {taken} on 127.0.0.1 is already in use" in output
    assert f"{which}={taken + 1000}" in output
    assert not (tmp_path / "var" / "db.sqlite3").exists()  # nothing else started


def test_demo_clock_moves_now_by_the_offset_in_its_file(tmp_path):
    clock_file = tmp_path / "demo-clock"
    original = timezone.now
    try:
        demo_clock.install(clock_file)
        assert abs(timezone.now() - original()) < timedelta(seconds=1)  # no file: real time
        demo_clock.offset_write(clock_file, timedelta(days=31))
        demo_clock.install(clock_file)
        assert abs(timezone.now() - original() - timedelta(days=31)) < timedelta(seconds=1)
    finally:
        timezone.now = original


@pytest.mark.django_db
def test_sent_mail_page_lists_the_demos_mail_and_is_404_outside_the_demo(
    client, settings, tmp_path, django_user_model
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    subject = "Your invoice 2026-000001 is paid"
    mail.EmailMessage(subject, "Thank you.", to=["m@shop.example"]).send()
    user = django_user_model.objects.create_user("merchant", password="x")
    client.force_login(user)

    settings.DEBUG = False
    assert client.get("/demo/mail/").status_code == 404

    settings.DEBUG = True
    page = client.get("/demo/mail/")
    assert page.status_code == 200
    assert "Your invoice 2026-000001 is paid" in page.content.decode()
    assert "Thank you." in page.content.decode()


@pytest.fixture
def demo_settings(settings, tmp_path):
    """This process set up as a demo process is: DEBUG, a clock file, the clock installed by
    the settings; the real clock again afterwards."""
    settings.DEBUG = True
    settings.DEMO_CLOCK_FILE = str(tmp_path / "demo-clock")
    demo_clock.install(Path(settings.DEMO_CLOCK_FILE))
    yield Path(settings.DEMO_CLOCK_FILE)
    demo_clock.uninstall()


def advance(days: int) -> str:
    out = io.StringIO()
    call_command("demo_advance", "--days", str(days), stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_two_advances_of_31_days_move_the_clock_62_days_and_bill_up_to_it(
    make_account, demo_settings
):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        account = make_account(slug="shop")  # monthly, periods from the 1st
        first = advance(31)
        second = advance(31)
        # Each advance moved the clock once, from where it stood: 62 days, not more.
        assert demo_clock.offset_read(demo_settings) == timedelta(days=62)
        assert timezone.now() == datetime(2027, 1, 2, tzinfo=UTC)
    assert "now reads 2026-12-02 00:00 UTC (+31 days)" in first
    assert "now reads 2027-01-02 00:00 UTC (+31 days)" in second
    issued = list(Invoice.objects.filter(account=account).order_by("issued_at"))
    # The first cycle's fees (P1), then a close on Dec 1 and one on Jan 1; nothing after the
    # new "now", and every row dated by the demo's clock at most.
    assert [i.issued_at for i in issued] == [
        datetime(2026, 11, 2, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    ]
    assert issued[-1].period_start == datetime(2026, 12, 1, tzinfo=UTC)
    assert issued[-1].period_end == datetime(2027, 1, 1, tzinfo=UTC)
    assert max(i.created_at for i in issued) <= datetime(2027, 1, 2, tzinfo=UTC)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("engine", "after_advance"),
    [
        # The demo's engine: the login lasts its two weeks of real time.
        ("billing_portal.demo_sessions", 200),
        # Django's own, which the demo used before: expired a month ago on the demo's clock,
        # so the page sent the merchant to the login page.
        ("django.contrib.sessions.backends.db", 302),
    ],
)
def test_a_logged_in_merchant_stays_logged_in_across_an_advance(
    client, owner, settings, demo_settings, engine, after_advance
):
    settings.SESSION_ENGINE = engine
    client.force_login(owner)
    assert client.get("/billing/shop/").status_code == 200
    advance(31)
    assert client.get("/billing/shop/").status_code == after_advance


def test_the_demo_settings_use_the_real_time_session_engine(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"DEBUG": "true", "DEMO_CLOCK_FILE": str(tmp_path / "demo-clock")}
    env["DEMO_ENV_FILE"] = str(tmp_path / "absent")
    code = (
        "from django.conf import settings; print(settings.SESSION_ENGINE, settings.EMAIL_BACKEND)"
    )
    shown = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "billing_portal.demo_sessions billing_portal.demo_mail.EmailBackend" in shown


@pytest.mark.django_db
def test_sent_mail_page_shows_the_demo_clocks_time_and_says_so(
    client, settings, tmp_path, demo_settings, django_user_model
):
    settings.EMAIL_BACKEND = "billing_portal.demo_mail.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    with time_machine.travel(datetime(2026, 11, 1, 9, 30, tzinfo=UTC), tick=False):
        demo_clock.offset_write(demo_settings, timedelta(days=31))
        demo_clock.install(demo_settings)
        mail.EmailMessage("Your invoice 2026-000002 is paid", "Thanks.", to=["m@x.example"]).send()
        client.force_login(django_user_model.objects.create_user("merchant", password="x"))
        page = client.get("/demo/mail/").content.decode()
    assert "Dec 2, 2026 09:30 UTC demo time" in page  # the mail's time on the demo's clock
    assert "Nov 1, 2026" not in page  # not the wall clock's
    assert "its clock reads Dec 2, 2026 09:30 UTC (moved forward" in page


@pytest.mark.parametrize("digits", [2, 4])
def test_the_standins_card_takes_the_year_as_yy_or_yyyy(stripe_standin, digits):
    year = datetime.now(UTC).year + 4  # never a year that passes
    typed = str(year)[-digits:]
    method = stripe_standin.client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {
                "number": "4242 4242 4242 4242",
                "exp_month": 12,
                "exp_year": typed,
                "cvc": "123",
            },
        }
    )
    assert (method.card.exp_year, method.card.last4) == (year, "4242")


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("exp_year", "203", "expiration year is invalid: type it as YY or YYYY"),
        ("exp_year", "202031", "expiration year is invalid: type it as YY or YYYY"),
        ("exp_year", "2150", "expiration year is invalid: the stand-in takes 2019 to 2099"),
        ("exp_month", "13", "expiration month is invalid: type it as MM"),
        ("number", "4242", "card number is incorrect: type its 16 digits"),
        ("cvc", "12", "security code is invalid: type its 3 digits"),
    ],
)
def test_the_standin_names_what_is_wrong_with_a_mistyped_card(
    stripe_standin, field, typed, message
):
    card = {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}
    with pytest.raises(stripe.InvalidRequestError, match=message) as refused:
        stripe_standin.client.v1.payment_methods.create(
            params={"type": "card", "card": card | {field: typed}}
        )
    assert refused.value.http_status == 400
