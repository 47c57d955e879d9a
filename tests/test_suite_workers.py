"""`make test` runs a pytest-xdist worker per core: no two workers share a Redis database (each
has its own test database through pytest-django), and this process uses the one it was given."""

import os

from django.db import connection

from tests.conftest import redis_url_of_worker


def test_each_worker_has_its_own_redis_database():
    url = "redis://127.0.0.1:6379/15"
    assert redis_url_of_worker(url, None) == url  # one process: the database asked for
    assert [redis_url_of_worker(url, f"gw{n}") for n in range(3)] == [
        "redis://127.0.0.1:6379/15",
        "redis://127.0.0.1:6379/14",
        "redis://127.0.0.1:6379/13",
    ]
    assert redis_url_of_worker("redis://127.0.0.1:6379/0", "gw1") == "redis://127.0.0.1:6379/15"


def test_a_worker_has_its_own_test_database(db):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    name = connection.settings_dict["NAME"]
    assert name.startswith("test_")
    if worker:
        assert name.endswith(f"_{worker}")
