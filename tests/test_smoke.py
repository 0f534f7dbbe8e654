"""The bundled example catalog: it checks, with the constructs it is there to show."""
from offerd import lang
from offerd.examples import CATALOG


def test_example_catalog_checks():
    catalog = lang.load(CATALOG)
    assert {"web_home", "callcenter_next", "newsletter", "sms"} <= set(catalog.spaces)
    # the second edition's constructs, shown to new rule authors
    assert catalog.groups["card_offers"].decision_caps
    assert catalog.spaces["sms"].eligible
    assert ("contact", "segment") in catalog.domains and ("contact", "satisfaction") in catalog.domains
