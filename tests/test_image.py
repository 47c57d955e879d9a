"""The container image (Dockerfile) carries every app of the portal: the image installs only the
dependencies (`packages = []` in pyproject.toml) and runs the code from /app, so an app left out of
the COPY lines is an ImportError at the first request that reaches it, not at build time."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_image_copies_every_app_of_the_import_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    apps = set(config["tool"]["importlinter"]["root_packages"])
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert apps - copied == set(), "the Dockerfile leaves these apps out"
    assert {"templates", "static", "deploy", "scripts"} <= copied
