"""Who is asking, and which accounts they may see. Every selector scopes through one of these."""

from dataclasses import dataclass

from django.db.models import QuerySet

from .models import Account, ApiKey


@dataclass(frozen=True)
class KeyPrincipal:
    """An API key: a partner key reaches the partner's accounts, an account key only its own."""

    key: ApiKey
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def partner_id(self) -> int | None:
        return self.key.partner_id

    @property
    def can_create_accounts(self) -> bool:
        return self.key.account_id is None and self.key.partner_id is not None

    def accounts(self) -> QuerySet[Account]:
        if self.key.account_id is not None:
            return Account.objects.filter(pk=self.key.account_id)
        if self.key.partner_id is None:
            # The key's check constraint rules this out; were it to happen, filtering on a NULL
            # partner would reach every partnerless account, so it reaches none.
            return Account.objects.none()
        return Account.objects.filter(partner_id=self.key.partner_id)

    def __str__(self) -> str:
        return f"key {self.key.prefix}"


def accounts_for_user(user) -> QuerySet[Account]:
    """Operators (staff) see every account; merchants see the accounts they are members of."""
    if user.is_staff:
        return Account.objects.all()
    return Account.objects.filter(memberships__user=user)


def accounts_for(principal) -> QuerySet[Account]:
    """The accounts a request's principal (API key or logged-in user) may reach."""
    if isinstance(principal, KeyPrincipal):
        return principal.accounts()
    if principal is not None and principal.is_authenticated:
        return accounts_for_user(principal)
    return Account.objects.none()
