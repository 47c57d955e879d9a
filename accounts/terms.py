"""The Terms of Service a card is saved under: the version in force (TERMS_VERSION), where it
is published (TERMS_URL) and the authorisation the merchant gives with the card, in the words
the Payment method page shows and an acceptance keeps (accounts.models.TermsAcceptance)."""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class CardAuthorisation:
    seller: str
    version: str
    url: str

    @property
    def text(self) -> str:
        """The sentence shown above "Save card" (the page links the address) and kept."""
        return (
            f"By saving this card you authorise {self.seller} to charge it for this account's "
            f"invoices under the Terms of Service (version {self.version}, {self.url})."
        )


def card_authorisation() -> CardAuthorisation:
    """The authorisation in force: the seller invoices name (TAX_SELLER_LEGAL_NAME), the
    terms' version and address."""
    return CardAuthorisation(
        seller=settings.TAX_SELLER_LEGAL_NAME,
        version=settings.TERMS_VERSION,
        url=settings.TERMS_URL,
    )
