"""Write paths for tenants, members, stores and API keys."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from axes.utils import reset as axes_reset
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record

from . import api_keys, logins, terms
from .errors import Conflict, DomainError
from .models import (
    Account,
    ApiKey,
    BillingChannel,
    Integration,
    LoginRecord,
    Membership,
    Partner,
    ShopifyShop,
    Store,
    TermsAcceptance,
    TermsSource,
    default_scopes,
)
from .tax_identity import tax_id_status_for, tax_identity_problems, vat_id_problems
from .validators import plain_text, shop_domain_valid

# Writing last_used_at on every request would put a row update on the hot ingest path;
# a minute's precision is what an operator reading "last used" needs.
_LAST_USED_PRECISION = timedelta(minutes=1)
# How long a rotated key keeps working when the operator names no end.
ROTATION_GRACE = timedelta(hours=24)


def partner_get_or_create(*, name: str) -> Partner:
    """The partner of that name, created on first use (create_api_key does this). A new
    name is checked like every name people read back (no control or bidi characters)."""
    partner = Partner.objects.filter(name=name).first()
    if partner is None:
        Partner(name=name).full_clean(validate_unique=False)
        with transaction.atomic():
            partner, created = Partner.objects.get_or_create(name=name)
            if created:  # two first uses at once: the one that created it records it
                audit_record(action="partner.created", obj=partner, after=name, label=name)
    return partner


def _scopes_clean(scopes) -> list[str]:
    chosen = list(dict.fromkeys(scopes))
    unknown = [s for s in chosen if s not in ApiKey.Scope.values]
    if not chosen or unknown:
        raise DomainError(
            f"Scopes are one or more of {', '.join(ApiKey.Scope.values)}; got {chosen or 'none'}.",
            code="invalid_scope",
            details={"scopes": chosen},
        )
    return chosen


def api_key_create(
    *,
    partner: Partner | None,
    account: Account | None = None,
    name: str = "",
    scopes=None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its raw value, which is never stored nor shown again."""
    plain_text(name)  # a label operators read in the admin and the console
    raw, prefix = api_keys.generate_key()
    with transaction.atomic():
        key = ApiKey.objects.create(
            partner=partner,
            account=account,
            name=name,
            prefix=prefix,
            key_hash=api_keys.hash_key(raw),
            scopes=_scopes_clean(default_scopes() if scopes is None else scopes),
            expires_at=expires_at,
        )
        audit_record(action="api_key.created", obj=key, after=_key_words(key), label=prefix)
    return key, raw


def _key_words(key: ApiKey) -> dict:
    """What a key may do, as the audit log keeps it (never its secret)."""
    return {
        "partner": key.partner.name if key.partner else None,
        "account": key.account.slug if key.account else None,
        "name": key.name,
        "scopes": key.scopes,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


@transaction.atomic
def api_key_rotate(
    *, key: ApiKey, old_key_expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key with the same reach, scopes and name; the old one keeps working until
    `old_key_expires_at` (default: 24 hours from now) so the partner can deploy the new one."""
    now = timezone.now()
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if not key.is_active_at(now):
        raise Conflict(f"Key {key.prefix} is revoked or expired: create a new key instead.")
    if hasattr(key, "rotated_to"):
        raise Conflict(f"Key {key.prefix} was already rotated (to {key.rotated_to.prefix}).")
    until = old_key_expires_at or now + ROTATION_GRACE
    if until < now:
        raise DomainError("The old key's end must not be in the past.", code="invalid_expiry")
    new, raw = api_key_create(
        partner=key.partner,
        account=key.account,
        name=key.name,
        scopes=key.scopes,
        expires_at=key.expires_at,
    )
    new.rotated_from = key
    new.save(update_fields=["rotated_from"])
    if key.expires_at is None or key.expires_at > until:
        key.expires_at = until
        key.save(update_fields=["expires_at"])
    audit_record(
        action="api_key.rotated",
        obj=key,
        after={"new_key": new.prefix, "old_key_expires_at": key.expires_at.isoformat()},
        label=key.prefix,
    )
    return new, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key: refused from now on. Revoking twice keeps the first revocation time."""
    with transaction.atomic():
        now = timezone.now()
        if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now):
            audit_record(action="api_key.revoked", obj=key, at=now, label=key.prefix)
    key.refresh_from_db()
    return key


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The live key matching `raw`, found by its visible prefix and checked by its hash."""
    prefix = api_keys.prefix_of(raw)
    if prefix is None:
        return None
    now = timezone.now()
    key = (
        ApiKey.objects.select_related("partner", "account")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if key is None or not api_keys.matches(raw, key.key_hash) or not key.is_active_at(now):
        return None
    if key.last_used_at is None or now - key.last_used_at >= _LAST_USED_PRECISION:
        # Conditional, so concurrent requests in the same minute write the row once at most.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - _LAST_USED_PRECISION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key


def account_create(
    *,
    slug: str,
    name: str,
    billing_email: str,
    currency: str = "USD",
    partner: Partner | None = None,
    billing_channel: str = BillingChannel.STRIPE,
    shop_domain: str = "",
    access_token: str = "",
    **details: str,
) -> Account:
    """Create a merchant account; a taken slug is a conflict, not a crash. Slugs are kept
    in lower case, so 'Bloom' is taken once 'bloom' is (docs/api.md, "Account slugs").
    A Shopify-channel account is created with its shop (domain and the app's access token,
    stored encrypted, never logged)."""
    slug = slug.lower()
    account = Account(
        slug=slug,
        name=name,
        billing_email=billing_email,
        currency=currency,
        partner=partner,
        billing_channel=billing_channel,
        # An EU VAT id given at creation waits for VIES like a changed one (billing queues it).
        tax_id_status=tax_id_status_for(details.get("vat_id", "")),
        **details,
    )
    account.full_clean(validate_unique=False)
    shop = _shop_for(account, shop_domain=shop_domain, access_token=access_token)
    if slug in RESERVED_SLUGS:
        raise _slug_unavailable(slug)
    try:
        with transaction.atomic():
            account.save()
            after = {"slug": slug, "currency": currency, "partner": partner and partner.name}
            if shop is not None:
                shop.account = account
                shop.save()
                after |= {"billing_channel": billing_channel, "shop_domain": shop.shop_domain}
            audit_record(
                action="account.created",
                obj=account,
                account_id=account.pk,
                after=after,
                label=slug,
            )
    except IntegrityError as exc:
        if shop is not None and ShopifyShop.objects.filter(shop_domain=shop.shop_domain).exists():
            raise _shop_taken(shop.shop_domain) from exc
        raise _slug_unavailable(slug) from exc
    return account


def _shop_for(account: Account, *, shop_domain: str, access_token: str) -> ShopifyShop | None:
    """The unsaved shop of a Shopify-channel account (None on the card channel), every field
    error named at once. The token's value is never put in an error or a log."""
    if account.billing_channel != BillingChannel.SHOPIFY:
        if shop_domain or access_token:
            message = "A shop is given only for the Shopify channel (billing_channel 'shopify')."
            raise DomainError(message, details={"fields": {"billing_channel": [message]}})
        return None
    errors: dict[str, list[str]] = {}
    try:
        shop_domain = shop_domain_valid(shop_domain)
    except ValidationError as exc:
        errors["shopify.shop_domain"] = list(exc.messages)
    if not (access_token or "").strip():
        errors["shopify.access_token"] = ["The app's access token for the shop is required."]
    if errors:
        field, messages = next(iter(errors.items()))
        raise DomainError(f"{field}: {messages[0]}", details={"fields": errors})
    if ShopifyShop.objects.filter(shop_domain=shop_domain).exists():
        raise _shop_taken(shop_domain)
    shop = ShopifyShop(shop_domain=shop_domain, installed_at=timezone.now())
    shop.set_access_token(access_token.strip())
    return shop


def _shop_taken(shop_domain: str) -> Conflict:
    message = f"The shop '{shop_domain}' already pays for another account."
    return Conflict(
        message,
        code="shop_taken",
        details={"fields": {"shopify.shop_domain": [message]}},
    )


# Slugs are one namespace for every tenant (they are in the merchant's page addresses), so a
# taken slug cannot be handed out twice. What the answer must not tell is whose it is: held by
# the caller, by another tenant, or reserved, the refusal is the same words and the same code,
# and nothing about the holder follows from it (reading it still answers 404). docs/api.md.
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "billing",
        "docs",
        "help",
        "login",
        "logout",
        "new",
        "pay",
        "settings",
        "static",
        "stripe",
        "support",
        "www",
    }
)


def _slug_unavailable(slug: str) -> Conflict:
    return Conflict(
        f"The slug '{slug}' is unavailable; choose another.",
        code="slug_unavailable",
        details={"fields": {"slug": ["This slug is unavailable; choose another."]}},
    )


@transaction.atomic
def store_create(*, account: Account, platform: str, name: str, domain: str = "") -> Store:
    """Connect a store; the connection itself is one integration (P5)."""
    store = Store.objects.create(account=account, platform=platform, name=name, domain=domain)
    integration = Integration.objects.create(
        account=account, store=store, kind=Integration.Kind.STORE, name=f"{name} ({platform})"
    )
    # Integrations are counted against the plan (P5): the store's is one.
    audit_record(action="integration.added", obj=integration, after=integration.name, label=name)
    return store


def integration_add(
    *, account: Account, kind: str, name: str, store: Store | None = None
) -> Integration:
    """Connect a channel (email, chat, social, ...), optionally to one store."""
    integration = Integration(account=account, store=store, kind=kind, name=name)
    integration.full_clean()
    with transaction.atomic():
        integration.save()
        audit_record(
            action="integration.added", obj=integration, after=f"{kind}: {name}", label=name
        )
    return integration


BILLING_DETAIL_FIELDS = (
    "billing_email",
    "company",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "country",
    "us_state",
    "vat_id",
)
# What VIES said of the VAT id: forgotten when the id or the country changes (a new id is a new
# question; the old answer, its date and consultation number were about another id).
TAX_ID_EVIDENCE_FIELDS = (
    "tax_id_status",
    "tax_id_checked_at",
    "tax_id_consultation",
    "tax_id_name",
)


def _audited(value: object) -> object:
    """A value as the audit row's JSON keeps it (the VIES date is a datetime)."""
    return value.isoformat() if isinstance(value, datetime) else value


def account_billing_details_update(*, account: Account, **details: str) -> Account:
    """Change where invoices and payment reminders go (F2) and what the next invoices show.
    A changed VAT id (or country) starts over as `pending` (an EU id) or `unchecked`; the
    caller that may queue tasks (billing.tax_identity) asks VIES once this commits."""
    unknown = set(details) - set(BILLING_DETAIL_FIELDS)
    if unknown:
        raise ValueError(f"Not billing details: {sorted(unknown)}")
    before = {field: getattr(account, field) for field in (*details, *TAX_ID_EVIDENCE_FIELDS)}
    for field, value in details.items():
        setattr(account, field, value)
    # The fields checked together (a partial update, from the API, meets the stored rest).
    problems = tax_identity_problems(
        country=account.country, us_state=account.us_state, postal_code=account.postal_code
    ) | vat_id_problems(vat_id=account.vat_id, country=account.country)
    if problems:
        raise ValidationError(problems)
    if account.vat_id != before.get("vat_id", account.vat_id) or account.country != before.get(
        "country", account.country
    ):
        account.tax_id_status = tax_id_status_for(account.vat_id)
        account.tax_id_checked_at = None
        account.tax_id_consultation = ""
        account.tax_id_name = ""
    account.full_clean(validate_unique=False)
    # Read back after cleaning: the form sends every field, the row names the changed ones.
    changed = [field for field in before if getattr(account, field) != before[field]]
    if not changed:
        return account
    with transaction.atomic():
        account.save(update_fields=changed)
        audit_record(
            action="account.billing_details",
            obj=account,
            account_id=account.pk,
            before={field: _audited(before[field]) for field in changed},
            after={field: _audited(getattr(account, field)) for field in changed},
            label=account.slug,
        )
    return account


def member_logins_unlock(*, account: Account) -> list[str]:
    """Forget the failed logins of the account's members (an operator's unlock), so that each
    can log in at once; returns the usernames that were locked. A lock on an address is left
    alone: the failures from it may be an attacker's (the admin's attempts list clears it)."""
    usernames = list(
        Membership.objects.filter(account=account).values_list("user__username", flat=True)
    )
    locked = sorted(logins.usernames_locked(usernames=usernames, now=timezone.now()))
    for username in usernames:
        axes_reset(username=username)
    return locked


# --- login history and terms acceptances (evidence for card disputes) ------------------------

# Logins are kept this long: a card network lets a cardholder dispute a charge for months
# after it (about 120 days for most reasons), and the evidence pack shows the 90 days before
# the charge: 400 days covers a yearly plan's charge disputed late, with room to spare.
LOGIN_HISTORY_KEPT = timedelta(days=400)


def login_record(
    *, user: Any, ip_address: str | None, user_agent: str, at: datetime | None = None
) -> LoginRecord:
    """Keep one successful login (the `user_logged_in` receiver, accounts.apps): a record of its
    own, read by a dispute's evidence pack, not a change anyone decides (no audit row)."""
    return LoginRecord.objects.create(
        user=user,
        at=at or timezone.now(),
        ip_address=ip_address,
        user_agent=user_agent[: logins.USER_AGENT_KEPT],
    )


def login_records_prune(*, now: datetime) -> int:
    """Forget the logins older than LOGIN_HISTORY_KEPT (the daily task); returns how many."""
    deleted, _ = LoginRecord.objects.filter(at__lt=now - LOGIN_HISTORY_KEPT).delete()
    return deleted


@dataclass(frozen=True)
class Acceptor:
    """Who accepts the terms, and from where: a member on the Payment method page (`user`), or
    a partner's key asserting that its merchant accepted (`key`)."""

    source: str
    user: Any = None
    key: ApiKey | None = None
    ip_address: str | None = None
    user_agent: str = ""

    @property
    def name(self) -> str:
        if self.key is not None:  # named as the audit log names the key
            return f"API key {self.key.prefix}" + (f" ({self.key.name})" if self.key.name else "")
        return self.user.get_username() if self.user is not None else ""


def terms_accept(*, account: Account, by: Acceptor, card: str = "") -> TermsAcceptance:
    """Record that `by` accepted the Terms of Service in force for the account, in the words
    shown (accounts.terms), with the card it authorises. The caller saving that card owns the
    transaction: the card and its acceptance commit together."""
    if by.source not in TermsSource.values or (by.user is None) == (by.key is None):
        raise ValueError("A terms acceptance names a member or a key, and its source.")
    authorisation = terms.card_authorisation()
    row = TermsAcceptance.objects.create(
        account=account,
        source=by.source,
        user=by.user,
        accepted_by=by.name[:160],
        version=authorisation.version,
        text=authorisation.text,
        card=card[:120],
        accepted_at=timezone.now(),
        ip_address=by.ip_address,
        user_agent=by.user_agent[: logins.USER_AGENT_KEPT],
    )
    audit_record(
        action="terms.accepted",
        obj=row,
        account_id=account.pk,
        after={"version": row.version, "card": row.card, "source": row.source},
        label=account.slug,
    )
    return row
