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
    assert "SECRET_KEY is unset (or the demo's key) while DEBUG is false" in result.stderr
    assert serve({"DEBUG": "true"}).returncode == 0  # the local demo starts
    assert serve({"DEBUG": "false", "SECRET_KEY": PRODUCTION["SECRET_KEY"]}).returncode == 0
    # Management commands that sign nothing still run (migrations, checks).
    assert "SECRET_KEY is unset" not in check_deploy({"DEBUG": "false"}).stderr
