"""The demo as a newcomer runs it: `scripts/demo.py` (what `make demo` calls) on free ports, the
README's commands beside it, the demo clock, the sent-mail page."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from billing_portal import demo_clock
from tests.stripe_standin import free_port

ROOT = Path(__file__).resolve().parent.parent


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The shell of someone who just cloned: no database configured, the demo's env file."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    env["DEMO_ENV_FILE"] = str(tmp_path / "env.demo")
    return env


def demo_start(tmp_path: Path, *, port: int, stripe_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "scripts/demo.py",
            "--port",
            str(port),
            "--stripe-port",
            str(stripe_port),
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


def wait_for(url: str, *, seconds: float, process: subprocess.Popen) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return response.status
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


# The demo runs in its own processes on the real clock: moving this process' clock changes
# nothing it checks.
@pytest.mark.clock_free
def test_demo_serves_on_the_ports_asked_and_fast_forwards_to_a_paid_invoice(tmp_path):
    port, stripe_port = free_port(), free_port()
    demo = demo_start(tmp_path, port=port, stripe_port=stripe_port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/login/", seconds=240, process=demo) == 200
        settings_file = (tmp_path / "env.demo").read_text()
        assert f"SITE_URL=http://127.0.0.1:{port}" in settings_file
        assert f"STRIPE_API_BASE=http://127.0.0.1:{stripe_port}" in settings_file

        # The README's operator command, pasted as printed, talks to the demo's stand-in.
        billing = manage(tmp_path, "run_billing")
        assert billing.returncode == 0, billing.stderr
        assert "api.stripe.com" not in billing.stdout + billing.stderr
        assert "No hostname was supplied" not in billing.stdout + billing.stderr

        advanced = manage(tmp_path, "demo_advance", "--days", "31")
        assert advanced.returncode == 0, advanced.stderr
        assert "(+31 days)" in advanced.stdout
        # A month later the demo store's current period has closed and its invoice is paid.
        new_invoices = [line for line in advanced.stdout.splitlines() if "demo-store" in line]
        assert new_invoices and all(line.endswith("paid") for line in new_invoices), advanced.stdout
        assert any((tmp_path / "var" / "mail").glob("*.log"))  # mail where the README says
    finally:
        demo.terminate()
        output, _ = demo.communicate(timeout=60)
    assert f"Demo ready at http://127.0.0.1:{port}" in output
    # Stopping the demo stops its stand-in and server: nothing answers on their ports.
    for stopped in (port, stripe_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", stopped), timeout=2).close()


def test_demo_refuses_a_port_that_is_taken_and_says_which(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        demo = demo_start(tmp_path, port=free_port(), stripe_port=taken)
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 2
    assert f"Port {taken} on 127.0.0.1 is already in use" in output
    assert f"STRIPE_PORT={taken + 1000}" in output
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
