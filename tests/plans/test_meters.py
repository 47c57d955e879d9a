"""The meter vocabulary has one home: the rules, the models' choices and the prices agree."""

from metering import rules
from plans import meters
from plans.models import Meter
from plans.pricing import DEFERRED_ON_ANNUAL, HELPDESK_METER, RESOLUTIONS_METER


def test_the_models_choices_are_the_vocabulary():
    assert dict(Meter.choices) == meters.LABELS


def test_the_rules_engine_names_the_same_meters():
    assert rules.METERS == meters.METERS
    assert set(rules.TICKET_METERS) < set(meters.METERS)


def test_pricing_names_the_same_meters():
    assert {HELPDESK_METER, RESOLUTIONS_METER, *DEFERRED_ON_ANNUAL} < set(meters.METERS)


def test_a_meter_has_one_label_everywhere():
    assert meters.meter_label("convert_clicks") == "Convert clicks"
    assert meters.meter_label("some_new_meter") == "some new meter"
