"""Run the demo: the Stripe stand-in, the portal and its scheduler, on ports of your choosing.

    python scripts/demo.py [--port 8000] [--stripe-port 8420] [--shopify-port 8430]
                           [--vies-port 8440] [--var var]

What `make demo PORT=… STRIPE_PORT=… SHOPIFY_PORT=…` runs. In order, each step only once the one
before it worked: the three ports checked free; the demo's settings written to `.env.demo` (read
by every `manage.py` command run beside the demo, so the README's commands talk to it); the
database migrated and the catalog loaded; the Stripe, Shopify and VIES stand-ins started and
answering;
the demo data created; then the scheduler (the beat schedule, run in-process) and the web server.
Ctrl-C stops all of them.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEALTHY_WITHIN_SECONDS = 20
# Signs the Shopify stand-in's webhooks; the portal verifies them with it (demo only).
DEMO_SHOPIFY_API_SECRET = "shpss_demo_secret"


class DemoError(Exception):
    """A step of the demo could not be done; the message says what to do about it."""


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ports_check(*, port: int, stripe_port: int, shopify_port: int, vies_port: int) -> None:
    ports = (
        ("PORT", port),
        ("STRIPE_PORT", stripe_port),
        ("SHOPIFY_PORT", shopify_port),
        ("VIES_PORT", vies_port),
    )
    for index, (name, number) in enumerate(ports):
        for other, other_number in ports[index + 1 :]:
            if number == other_number:
                raise DemoError(f"{name} and {other} are both {number}: choose different ports.")
    for name, number in ports:
        if not port_is_free(number):
            raise DemoError(
                f"Port {number} on 127.0.0.1 is already in use (another demo?). Stop what holds "
                f"it or choose another, e.g. make demo {name}={number + 1000}"
            )


def env_file_write(
    path: Path, *, port: int, stripe_port: int, shopify_port: int, vies_port: int, var: Path
) -> dict[str, str]:
    """The demo's settings, in the file every `manage.py` command of the demo reads."""
    values = {
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
        "EMAIL_URL": f"filemail://{var / 'mail'}",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "STRIPE_JS_URL": f"http://127.0.0.1:{stripe_port}/js.stripe.com/v3/",
        "DEMO_CLOCK_FILE": str(var / "demo-clock"),
        "DEMO_PORT": str(port),
        "SHOPIFY_ADMIN_URL": (
            f"http://127.0.0.1:{shopify_port}/{{shop}}/admin/api/2025-04/graphql.json"
        ),
        "SHOPIFY_API_SECRET": DEMO_SHOPIFY_API_SECRET,
        # VAT ids are checked against the VIES stand-in, never the EU's service.
        "VIES_API_URL": f"http://127.0.0.1:{vies_port}",
        # The ECB's rates too (VAT in euros on USD invoices): the same stand-in, its 90-day
        # file, so that an advance of the demo's clock loads every day it jumps over.
        "ECB_RATES_URL": f"http://127.0.0.1:{vies_port}/ecb/eurofxref-hist-90d.xml",
    }
    lines = [
        f"# Written by `make demo PORT={port} STRIPE_PORT={stripe_port} "
        f"SHOPIFY_PORT={shopify_port} VIES_PORT={vies_port}`: the demo's settings,",
        "# read by every manage.py command run beside it (never by a configured server).",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return values


def spawn(script: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """One of our own scripts, run with this Python from the checkout."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env)  # noqa: S603


def manage(*args: str, env: dict[str, str]) -> None:
    if spawn("manage.py", *args, env=env).wait() != 0:
        raise DemoError(f"`manage.py {' '.join(args)}` failed (see above).")


def standin_wait(
    process: subprocess.Popen,
    *,
    port: int,
    name: str = "Stripe",
    request: urllib.request.Request | None = None,
) -> None:
    """Return once the stand-in answers `request` (by default an authenticated Stripe call);
    fail if it died or hangs."""
    if request is None:
        url = f"http://127.0.0.1:{port}/v1/customers?limit=1"
        request = urllib.request.Request(url, headers={"Authorization": "Bearer sk_test_local"})  # noqa: S310
    deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(
                f"The {name} stand-in exited (code {process.returncode}) before answering on "
                f"port {port}; its output is above."
            )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise DemoError(f"The {name} stand-in did not answer on port {port} within 20 s.")


def run(
    *, port: int, stripe_port: int, shopify_port: int, vies_port: int, var: Path, env_file: Path
) -> int:
    ports_check(port=port, stripe_port=stripe_port, shopify_port=shopify_port, vies_port=vies_port)
    var.mkdir(parents=True, exist_ok=True)
    values = env_file_write(
        env_file,
        port=port,
        stripe_port=stripe_port,
        shopify_port=shopify_port,
        vies_port=vies_port,
        var=var,
    )
    # Each child reads .env.demo itself; passing the values too keeps a stale shell variable
    # (say, a DATABASE_URL exported for the tests) from pointing the demo elsewhere.
    env = {**os.environ, **values, "DEMO_ENV_FILE": str(env_file)}
    children: list[subprocess.Popen] = []

    def stop(*_args) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        manage("migrate", "--noinput", env=env)
        manage("load_catalog", env=env)
        standin = spawn(
            "scripts/localstripe_server.py",
            "--port",
            str(stripe_port),
            "--store",
            str(var / "localstripe.pickle"),
            env=env,
        )
        children.append(standin)
        standin_wait(standin, port=stripe_port)
        # Shopify's stand-in keeps its state in memory (shops are created on it through its
        # control API at each start); its webhooks go to the portal started below, and its
        # clock follows the demo's.
        shopify = spawn(
            "scripts/shopify_standin.py",
            "--port",
            str(shopify_port),
            "--webhook-url",
            f"http://127.0.0.1:{port}/webhooks/shopify/",
            "--api-secret",
            DEMO_SHOPIFY_API_SECRET,
            "--clock-file",
            values["DEMO_CLOCK_FILE"],
            env=env,
        )
        children.append(shopify)
        health = urllib.request.Request(f"http://127.0.0.1:{shopify_port}/_standin/health")  # noqa: S310
        standin_wait(shopify, port=shopify_port, name="Shopify", request=health)
        # VIES's stand-in: the demo merchants' VAT ids are asked at setup and before closes.
        vies = spawn(
            "scripts/vies_standin.py",
            "--port",
            str(vies_port),
            "--clock-file",  # ECB's files dated by the demo's clock
            values["DEMO_CLOCK_FILE"],
            env=env,
        )
        children.append(vies)
        vies_health = urllib.request.Request(f"http://127.0.0.1:{vies_port}/health")  # noqa: S310
        standin_wait(vies, port=vies_port, name="VIES", request=vies_health)
        # The day's ECB rates, before the first invoice (beat loads them every 6 hours after).
        manage("ecb_rates_load", values["ECB_RATES_URL"], env=env)
        manage("demo_setup", env=env)
        children.append(spawn("manage.py", "demo_scheduler", env=env))
        server = spawn("manage.py", "runserver", "--noreload", f"127.0.0.1:{port}", env=env)
        children.append(server)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stripe-port", type=int, default=8420)
    parser.add_argument("--shopify-port", type=int, default=8430)
    parser.add_argument("--vies-port", type=int, default=8440)
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="Data folder.")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(os.environ.get("DEMO_ENV_FILE", ROOT / ".env.demo")),
        help="Where the demo's settings are written.",
    )
    args = parser.parse_args()
    try:
        sys.exit(
            run(
                port=args.port,
                stripe_port=args.stripe_port,
                shopify_port=args.shopify_port,
                vies_port=args.vies_port,
                var=args.var.resolve(),
                env_file=args.env_file.resolve(),
            )
        )
    except DemoError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
