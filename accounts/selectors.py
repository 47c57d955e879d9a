"""Read paths for tenants. Every function here is scoped by a principal or an account."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from .errors import NotFound
from .models import (
    Account,
    ApiKey,
    Integration,
    LoginRecord,
    Membership,
    TermsAcceptance,
    may_manage_billing,
)
from .principals import accounts_for


def account_get(*, principal, slug: str) -> Account:
    """The account `slug` if the principal may reach it; 404 otherwise (no existence leak).
    Slugs are kept in lower case, so any case of it finds the account."""
    account = accounts_for(principal).filter(slug=slug.lower()).select_related("partner").first()
    if account is None:
        raise NotFound(f"No account '{slug}'.")
    return account


def account_list(*, principal) -> QuerySet[Account]:
    return accounts_for(principal).order_by("-created_at", "-pk")


def account_integration_count(*, account: Account) -> int:
    """P5: every active integration counts once: each store connection and each channel of it.

    store_create() makes the store's own integration, so 2 stores each with chat, email and
    social count 2 + 2 × 3 = 8.
    """
    return Integration.objects.filter(account=account, is_active=True).count()


@dataclass(frozen=True)
class BillingAccess:
    """What a logged-in user may do on an account's billing pages."""

    account: Account
    role: str

    @property
    def can_change(self) -> bool:
        """Owners and admins change plans, cards and details; agents only look."""
        return may_manage_billing(self.role)


def billing_access(*, user, slug: str) -> BillingAccess | None:
    """The one decision for every billing page, form and file: the user's seat in the account,
    or None (not a member: the page answers 404, never leaking that the account exists).

    Staff are not merchants: unless they hold a seat themselves, they get None here and use
    the operator console instead.
    """
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.filter(user=user, account__slug=slug.lower())
        .select_related("account")
        .first()
    )
    if membership is None:
        return None
    return BillingAccess(account=membership.account, role=membership.role)


# The operator console's permission (the "billing operators" group holds it). Decided here, below
# the screens, because the console admits operators and the billing pages send them there.
OPERATOR_PERMISSION = "audit.use_console"


def is_operator(user) -> bool:
    """A logged-in, active staff member who may use the operator console."""
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(OPERATOR_PERMISSION)
    )


def api_key_list(*, partner=None, account=None) -> QuerySet[ApiKey]:
    """Keys of a partner (all its keys, account keys included) or of one account, newest
    first; the operator console lists them with this."""
    keys = ApiKey.objects.select_related("partner", "account", "rotated_from")
    if account is not None:
        keys = keys.filter(account=account)
    elif partner is not None:
        keys = keys.filter(partner=partner)
    return keys.order_by("-created_at", "-pk")


def api_key_get(*, prefix: str) -> ApiKey:
    """A key by its visible prefix (what operators see and paste)."""
    key = ApiKey.objects.select_related("partner", "account").filter(prefix=prefix).first()
    if key is None:
        raise NotFound(f"No API key '{prefix}'.")
    return key


def terms_acceptance_list(*, account: Account) -> QuerySet[TermsAcceptance]:
    """The account's acceptances of the Terms of Service, oldest first."""
    return TermsAcceptance.objects.filter(account=account).order_by("accepted_at", "pk")


def member_login_list(*, account: Account, since: datetime) -> QuerySet[LoginRecord]:
    """The successful logins since `since` of the account's members, oldest first."""
    return (
        LoginRecord.objects.filter(user__memberships__account=account, at__gte=since)
        .select_related("user")
        .order_by("at", "pk")
    )
