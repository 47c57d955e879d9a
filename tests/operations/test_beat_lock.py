"""Two beats running against one Redis: only the lock holder schedules; when it is killed the
other takes over within the lock's TTL."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.metering.test_celery_redis import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
TTL = 3


def heartbeats_by_beat(client) -> Counter:
    """Heartbeat tasks waiting in the broker, by the pid of the beat that sent them."""
    sent = Counter()
    for raw in client.lrange("billing", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers["task"] == "operations.heartbeat":
            sent[int(headers["origin"].split("@")[0].removeprefix("gen"))] += 1
    return sent


def beat(tmp_path: Path, n: int) -> subprocess.Popen:
    env = os.environ | {
        "CELERY_BROKER_URL": REDIS_URL,
        "BEAT_HEARTBEAT_SECONDS": "1",
        "BEAT_LOCK_TTL": str(TTL),
        "SECRET_KEY": "beat-lock-test-" + "x" * 40,
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "billing_portal",
            "beat",
            "-s",
            str(tmp_path / f"schedule-{n}"),
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_of_two_beats_only_the_lock_holder_schedules_and_the_other_takes_over(tmp_path):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis at TEST_REDIS_URL")
    beats = {b.pid: b for b in (beat(tmp_path, 1), beat(tmp_path, 2))}
    try:
        first = wait_for(lambda: heartbeats_by_beat(client), timeout=30)
        time.sleep(4)  # both beats are up and ticking now
        sent = heartbeats_by_beat(client)
        assert len(sent) == 1, sent  # one beat schedules; the other waits
        [holder] = sent
        assert sent[holder] > first[holder]  # and it keeps scheduling, once a second
        beats[holder].send_signal(signal.SIGKILL)  # dies holding the lock
        beats[holder].wait()
        killed_at = sent[holder]
        [other] = set(beats) - {holder}
        wait_for(lambda: heartbeats_by_beat(client)[other] >= 2, timeout=TTL + 15)
        after = heartbeats_by_beat(client)
        assert after[holder] <= killed_at + 1 and after[other] >= 2
    finally:
        for process in beats.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
        client.flushdb()
