"""Console personas and a past-due invoice to act on."""

import uuid

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission

from billing.models import Invoice
from tests.billing.test_payments import DECLINED, T0, bill, use_card  # noqa: F401  (fixture)

OPERATORS = "billing operators"


def operators_group() -> Group:
    """The group the data migration creates; made again here because transactional tests
    (the browser's) flush every table, migration rows included."""
    group, _ = Group.objects.get_or_create(name=OPERATORS)
    group.permissions.add(Permission.objects.get(codename="use_console"))
    return group


@pytest.fixture
def operator(db, django_user_model):
    user = django_user_model.objects.create_user(
        "olivia", email="olivia@ops.example", password="pw-operator-1", is_staff=True
    )
    user.groups.add(operators_group())
    return user


@pytest.fixture
def ops(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def staff_without_console(db, django_user_model):
    return django_user_model.objects.create_user(
        "sam", email="sam@ops.example", password="pw-staff-1", is_staff=True
    )


@pytest.fixture
def shop(make_account, stripe_standin, partner_api):
    with time_machine.travel(T0, tick=False):
        return make_account(slug="shop", plan="basic")


@pytest.fixture
def past_due(shop, partner_api, stripe_standin, bill):  # noqa: F811
    """The shop's first invoice ($60.00), declined: past due, retries scheduled."""
    use_card(partner_api, stripe_standin, DECLINED)
    bill(T0)
    invoice = Invoice.objects.get(account=shop)
    assert invoice.status == "past_due"
    return invoice


@pytest.fixture
def act(ops, django_capture_on_commit_callbacks):
    """POST an action's confirmation form as the operator, with its one-time token; what the
    commit queues (emails, the collection task) runs."""

    def post(url, **data):
        data.setdefault("form_token", uuid.uuid4().hex)
        with django_capture_on_commit_callbacks(execute=True):
            return ops.post(url, data)

    return post
