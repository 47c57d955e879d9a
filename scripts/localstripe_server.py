"""Run localstripe, the Stripe stand-in, on loopback with a private store file.

localstripe's own CLI listens on every interface and keeps its store in a fixed file shared by
every instance (/tmp/localstripe.pickle). Tests start one instance per worker and the demo one
of its own, so this launcher binds 127.0.0.1 and points the store at a file of our choosing.
localstripe (GPL-3.0) runs as a separate process; none of its code is copied here.

Two things are added around it, for people typing cards into the demo: a mistyped card is
answered in words naming the field (`card_problem`), not "Bad request"; and its Stripe.js is
served with `localstripe_card.js` after it, which sends the card's year as typed (YY or YYYY:
localstripe's card field put "20" before it, so 2028 became 202028).

    python scripts/localstripe_server.py --port 8420 --store var/localstripe.pickle [--from-scratch]
    python scripts/localstripe_server.py --port 8420 --in-memory     # the tests' stand-ins

localstripe writes its whole store to disk after every write, so each request costs in
proportion to everything stored before it; the tests' stand-ins, which start empty and are never
restarted, keep it in memory (the chaos suite's thousands of invoices took minutes per hundred).
"""

import argparse
import logging
import pickle
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRIPE_JS = "/js.stripe.com/v3/"


def card_problem(card: dict) -> tuple[str, str] | None:
    """What is wrong with a card as typed, in Stripe's words, with its error code; None if
    nothing is. localstripe answers every mistake with "Bad request"; this names the field.
    Fixes in place what is only a way of writing: spaces in the number, a year as YY."""
    number = re.sub(r"[\s-]", "", str(card.get("number", "")))
    if not re.fullmatch(r"\d{16}", number):
        return "Your card number is incorrect: type its 16 digits.", "incorrect_number"
    month = str(card.get("exp_month", "")).strip()
    if not (month.isdigit() and 1 <= int(month) <= 12):
        return "Your card's expiration month is invalid: type it as MM (01 to 12).", (
            "invalid_expiry_month"
        )
    year = str(card.get("exp_year", "")).strip()
    if not re.fullmatch(r"\d{2}|\d{4}", year):
        return "Your card's expiration year is invalid: type it as YY or YYYY.", (
            "invalid_expiry_year"
        )
    full_year = int(year) + (2000 if len(year) == 2 else 0)
    # localstripe's own bounds. No "in the past": its own test cards (pm_card_visa, which the
    # demo saves) expire in 2030, and the stand-in never says a card has expired.
    if not 2019 <= full_year < 2100:
        return "Your card's expiration year is invalid: the stand-in takes 2019 to 2099.", (
            "invalid_expiry_year"
        )
    cvc = str(card.get("cvc", "")).strip()
    if not re.fullmatch(r"\d{3}", cvc):
        return "Your card's security code is invalid: type its 3 digits.", "invalid_cvc"
    card.update(number=number, exp_month=int(month), exp_year=full_year, cvc=cvc)
    return None


def card_checks_install(resources, errors) -> None:
    """localstripe's payment methods refuse a mistyped card with words, not "Bad request"."""
    create = resources.PaymentMethod.__init__

    def checked(self, type=None, card=None, **kwargs):  # localstripe's own names
        if type == "card" and isinstance(card, dict):
            problem = card_problem(card)
            if problem:
                message, code = problem
                raise errors.UserError(400, message, {"code": code, "param": "card"})
        create(self, type=type, card=card, **kwargs)

    resources.PaymentMethod.__init__ = checked


def stripe_js_patched(web):
    """A middleware serving localstripe's Stripe.js with scripts/localstripe_card.js after it
    (the card field's year as typed)."""
    patch = (HERE / "localstripe_card.js").read_text()

    @web.middleware
    async def middleware(request, handler):
        response = await handler(request)
        if request.path == STRIPE_JS and response.status == 200:
            return web.Response(
                text=f"{response.text}\n{patch}", content_type="application/javascript"
            )
        return response

    return middleware


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=Path, help="Private pickle file for the store.")
    where.add_argument(
        "--in-memory", action="store_true", help="Keep the store in memory only (starts empty)."
    )
    parser.add_argument(
        "--from-scratch", action="store_true", help="Ignore an existing store file."
    )
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import errors, resources, server

    store_path: Path | None = args.store

    def load(store) -> None:
        if store_path.exists():
            with store_path.open("rb") as f:
                saved = pickle.load(f)  # noqa: S301 - our own file, written below
            store.clear()
            store.update(saved)

    def dump(store) -> None:
        tmp = store_path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(store_path)  # a reader never sees a half-written store

    if args.in_memory:
        resources.Store.try_load_from_disk = lambda store: None
        resources.Store.dump_to_disk = lambda store: None
    else:
        resources.Store.try_load_from_disk = load
        resources.Store.dump_to_disk = dump
        store_path.parent.mkdir(parents=True, exist_ok=True)
        if not args.from_scratch:
            resources.store.try_load_from_disk()

    card_checks_install(resources, errors)
    server.app.middlewares.insert(0, stripe_js_patched(web))
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
