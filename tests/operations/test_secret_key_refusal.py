"""Without DEBUG, no production process starts on a weak SECRET_KEY (issue 22, item 2): gunicorn,
runserver, a Celery worker and beat each exit non-zero with the reason on stderr before serving or
consuming, for a missing key, the demo's, "changeme", a django-insecure- one and a repetitive one;
with a good key each one starts (serves /healthz, answers a ping, schedules the heartbeat).

A worker used to log the refusal from a `worker_init` receiver, print "ready" and run tasks.
"""

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from billing_portal.startup import secret_key_weakness
from tests.metering.test_celery_redis import REDIS_URL
from tests.operations.test_beat_lock import heartbeats_by_beat
from tests.stripe_standin import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Refused processes (started side by side) must all be gone within this many seconds. Alone on
# an idle machine one takes 1-2 s (gunicorn, runserver) or about 4 s (a worker or beat imports
# every task module first); the margin is for a loaded two-core CI host. A process that is not
# refused runs until it is stopped, which is what the worker did before.
REFUSED_WITHIN = 90
GOOD_KEY = secrets.token_urlsafe(50)

BAD_KEYS: dict[str, tuple[str | None, str]] = {
    # name: (SECRET_KEY, or None for unset; what stderr says of it)
    "unset": (None, "SECRET_KEY starts with 'django-insecure-'"),  # falls back to the demo's
    "empty": ("", "SECRET_KEY is unset"),
    "changeme": ("changeme", "SECRET_KEY has 8 characters (at least 50 are needed)"),
    "django-insecure-": (
        "django-insecure-" + secrets.token_urlsafe(50),
        "SECRET_KEY starts with 'django-insecure-'",
    ),
    "four characters": ("abcd" * 20, "SECRET_KEY has 4 distinct characters"),
}


@pytest.mark.parametrize(
    ("key", "weakness"),
    [
        ("", "is unset"),
        ("changeme", "has 8 characters (at least 50 are needed)"),
        ("k" * 45 + "abcd", "has 49 characters (at least 50 are needed)"),
        ("k" * 46 + "abcd", None),  # 50 characters, 5 distinct: Django's W009 passes it too
        ("k" * 47 + "abc", "has 4 distinct characters (at least 5 are needed)"),
        ("django-insecure-" + "kP3-vT9zQw1!mR7yL0sX4bN8cJ2hF6dG5aE" * 2, "starts with"),
        ("kP3-vT9zQw1!mR7yL0sX4bN8cJ2hF6dG5aE" * 2, None),
    ],
)
def test_the_weak_keys_are_those_of_djangos_w009(key, weakness):
    found = secret_key_weakness(key)
    if weakness is None:
        assert found is None
    else:
        assert found is not None and found.startswith(weakness)


def process_env(tmp_path: Path, key: str | None, **extra: str) -> dict[str, str]:
    """The environment of a production process: DEBUG off, this key (or none), SQLite (no process
    here needs the test database), the test's Redis as broker."""
    skip = {"SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE", "PROMETHEUS_MULTIPROC_DIR"}
    env = {name: value for name, value in os.environ.items() if name not in skip}
    env |= {
        "DEBUG": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": REDIS_URL,
        "BEAT_HEARTBEAT_SECONDS": "1",
        "BEAT_LOCK_TTL": "3",
        **extra,
    }
    if key is not None:
        env["SECRET_KEY"] = key
    return env


def command(kind: str, tmp_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """How the Procfile (and the demo, for runserver) starts each process."""
    if kind == "gunicorn":
        return [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "billing_portal.wsgi"], {
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": "1",
        }
    if kind == "runserver":
        return [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], {}
    if kind == "worker":
        return [
            str(BIN / "celery"),
            *("-A", "billing_portal", "worker", "--pool", "solo", "-Q", f"refusal-{port}"),
            *("-n", f"refusal-{port}@%h", "--without-gossip", "--without-mingle"),
            *("--without-heartbeat", "--loglevel", "INFO"),
        ], {}
    assert kind == "beat"
    schedule = str(tmp_path / f"beat-{port}")
    return [
        str(BIN / "celery"),
        *("-A", "billing_portal", "beat", "-s", schedule, "--loglevel", "INFO"),
    ], {}


@pytest.fixture
def redis_db():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: the suite needs it (see README)")
    yield client
    client.flushdb()  # a beat's lock, a worker's pidbox


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


KINDS = ["gunicorn", "runserver", "worker", "beat"]


@pytest.mark.clock_free
@pytest.mark.parametrize("kind", KINDS)
def test_a_weak_secret_key_stops_each_process_before_it_serves(kind, tmp_path, redis_db):
    started = time.monotonic()
    processes = {}
    try:
        for name, (key, _) in BAD_KEYS.items():  # all at once: each only imports and exits
            argv, extra = command(kind, tmp_path, free_port())
            # With its reloader (the default), runserver used to print the refusal and wait.
            argv = [arg for arg in argv if arg != "--noreload"]
            processes[name] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=process_env(tmp_path, key, **extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for name, process in processes.items():
            left = started + REFUSED_WITHIN - time.monotonic()
            try:
                out, err = process.communicate(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{kind} with the {name} key still runs after {REFUSED_WITHIN} s")
            assert process.returncode == 1, (name, out, err)
            said = BAD_KEYS[name][1]
            assert f"Refusing to start: {said}" in err, (name, err)
            assert "while DEBUG is false" in err
            assert "Traceback" not in err and "Booting worker" not in err + out
            assert " ready." not in out + err  # a worker never got as far as consuming
    finally:
        for process in processes.values():
            stop(process)
    elapsed = time.monotonic() - started
    print(f"{kind}: {len(processes)} refusals in {elapsed:.1f} s")
    assert not redis_db.keys("billing_portal:beat-lock")  # no beat ever got as far as the lock


@pytest.mark.clock_free
def test_gunicorn_without_its_config_file_stops_when_the_application_loads(tmp_path):
    """Started bare (`gunicorn billing_portal.wsgi`), each worker fails to boot on wsgi.py's
    refusal and the master stops (status 3, or 1 when two workers fail at once) instead of
    serving."""
    port = free_port()
    process = subprocess.run(
        [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "billing_portal.wsgi"],
        cwd=ROOT,
        env=process_env(tmp_path, "changeme"),
        capture_output=True,
        text=True,
        timeout=REFUSED_WITHIN,
    )
    assert process.returncode != 0, process.stderr
    assert "SECRET_KEY has 8 characters (at least 50 are needed)" in process.stderr
    assert "Worker failed to boot" in process.stderr


def get(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as answered:
        return answered.code
    except OSError:
        return 0  # not listening yet


def wait_for(process: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"exited ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within 60 s")
        time.sleep(0.2)


@pytest.mark.clock_free
@pytest.mark.parametrize("kind", KINDS)
def test_a_good_secret_key_starts_each_process(kind, tmp_path, redis_db):
    port = free_port()
    argv, extra = command(kind, tmp_path, port)
    log = tmp_path / "log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=process_env(tmp_path, GOOD_KEY, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        if kind in ("gunicorn", "runserver"):
            url = f"http://127.0.0.1:{port}/healthz"
            wait_for(process, lambda: get(url) == 200, "/healthz answering 200")
        elif kind == "worker":
            # Not the current app: shared tasks sent later in this process would go to this
            # probe's broker (closed below) instead of the portal's in-process Celery.
            probe = Celery("probe", broker=REDIS_URL, set_as_current=False)
            name = f"refusal-{port}@{os.uname().nodename}"
            wait_for(
                process,
                lambda: bool(probe.control.ping(destination=[name], timeout=0.5)),
                "an answer to ping",
            )
            probe.close()
        else:
            wait_for(process, lambda: bool(heartbeats_by_beat(redis_db)), "a heartbeat sent")
    finally:
        stop(process)
    assert "Refusing to start" not in log.read_text()
