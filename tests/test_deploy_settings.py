"""`manage.py check --deploy` is clean when production values are set (.env.example)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "SECRET_KEY": "kP3-vT9zQw1!mR7yL0sX4bN8cJ2hF6dG5aE" * 2,
    "DEBUG": "false",
    "ALLOWED_HOSTS": "billing.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    # The deployment's own legal entity, not the demo's made-up one (tax.W001).
    "TAX_SELLER_LEGAL_NAME": "Exemple Logiciels SAS",
    "TAX_SELLER_VAT_ID": "FR40303265045",
}


def check_deploy(extra: dict) -> subprocess.CompletedProcess:
    skip = set(PRODUCTION) | {"DJANGO_ALLOW_ASYNC_UNSAFE"}  # never set in deployment
    env = {k: v for k, v in os.environ.items() if k not in skip} | extra
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_values():
    result = check_deploy(PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_the_development_defaults():
    result = check_deploy({})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr
    assert "tax.W001" in result.stdout + result.stderr


def serve(extra: dict) -> subprocess.CompletedProcess:
    """Load the WSGI application as a web server would."""
    skip = set(PRODUCTION) | {"DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in skip} | extra
    return subprocess.run(
        [sys.executable, "-c", "import billing_portal.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_portal_refuses_to_start_without_a_secret_key_when_debug_is_off():
    """Anything signed with the demo's known key (confirmation links) could be forged."""
    result = serve({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY starts with 'django-insecure-'" in result.stderr
    assert "while DEBUG is false" in result.stderr
    assert serve({"DEBUG": "true"}).returncode == 0  # the local demo starts
    assert serve({"DEBUG": "false", "SECRET_KEY": PRODUCTION["SECRET_KEY"]}).returncode == 0
    # Management commands that sign nothing still run (migrations, checks): `check --deploy`
    # gets to say what is wrong.
    checked = check_deploy({"DEBUG": "false"})
    assert "while DEBUG is false" not in checked.stderr
    assert "security.W009" in checked.stdout + checked.stderr


def test_production_trusts_no_loopback_peer_with_metrics_unless_told_to():
    """A proxy on the same host makes every visitor a loopback peer (docs/deploy.md)."""
    skip = set(PRODUCTION) | {"DJANGO_ALLOW_ASYNC_UNSAFE", "METRICS_ALLOW_LOOPBACK"}
    env = {k: v for k, v in os.environ.items() if k not in skip} | PRODUCTION
    env["DJANGO_SETTINGS_MODULE"] = "billing_portal.settings"
    read = "from django.conf import settings as s; print(s.METRICS_ALLOW_LOOPBACK)"

    def allowed(extra: dict) -> str:
        return subprocess.run(
            [sys.executable, "-c", read],
            cwd=ROOT,
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()

    assert allowed({}) == "False"
    assert allowed({"METRICS_ALLOW_LOOPBACK": "true"}) == "True"
    assert allowed({"DEBUG": "true"}) == "True"  # the demo: curl 127.0.0.1:8000/metrics
