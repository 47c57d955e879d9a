"""The seller entity in settings, checked at start (billing.tax_checks, Django system check)."""

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from billing.tax_checks import (
    seller_demo_check,
    seller_problems,
    seller_settings_check,
    seller_tax,
)

# The demo's seller (the settings' defaults), not the suite's US one (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("eu_seller")


def test_the_demo_seller_is_complete_and_builds_the_decisions_seller(settings):
    assert seller_problems() == []
    seller = seller_tax()
    assert (seller.country, seller.vat_id, seller.oss_registered) == ("FR", "FR11123456782", True)
    assert seller.us_states == frozenset({"WA"})


def test_each_problem_is_named_in_words(settings):
    settings.TAX_SELLER_LEGAL_NAME = " "
    settings.TAX_SELLER_ADDRESS = []
    settings.TAX_SELLER_VAT_ID = "FR11123456783"
    settings.TAX_SELLER_US_STATES = ["wa", "TX"]
    assert seller_problems() == [
        "TAX_SELLER_LEGAL_NAME is empty: every invoice names its seller.",
        "TAX_SELLER_ADDRESS is empty: every invoice gives the seller's address.",
        "TAX_SELLER_VAT_ID: FR11123456783 is not a valid VAT id: its check digits do not "
        "match: look for a mistyped digit.",
        "TAX_SELLER_US_STATES names TX, which has no rate in force in plans/tax/us_rates.json: "
        "add it (with its source) or remove the state.",
    ]
    assert [m.id for m in seller_settings_check()] == [
        "tax.E001",
        "tax.E002",
        "tax.E003",
        "tax.E004",
    ]


def test_manage_py_check_refuses_a_bad_seller(settings):
    settings.TAX_SELLER_COUNTRY = "France"
    with pytest.raises(SystemCheckError, match="TAX_SELLER_COUNTRY 'FRANCE' is not a two-letter"):
        call_command("check")


def test_check_deploy_warns_while_the_seller_is_the_demos_made_up_company(settings):
    # Complete and well formed, so the start-up check passes it: only `check --deploy` can
    # tell that nobody set the deployment's own legal entity.
    assert seller_problems() == []
    deploy = checks.run_checks(tags=["tax"], include_deployment_checks=True)
    assert [m.id for m in deploy] == ["tax.W001"]
    assert "TAX_SELLER_LEGAL_NAME, TAX_SELLER_VAT_ID left at the default" in deploy[0].msg
    assert checks.run_checks(tags=["tax"]) == []  # not at every start: the demo runs on it
    settings.TAX_SELLER_LEGAL_NAME = "Exemple Logiciels SAS"
    assert "(TAX_SELLER_VAT_ID left at the default)" in seller_demo_check()[0].msg
    settings.TAX_SELLER_VAT_ID = "FR40303265045"
    assert seller_demo_check() == []
