from offerd import lang


def test_example_catalog_checks():
    catalog = lang.load("examples/catalog")
    assert {"web_home", "callcenter_next", "newsletter"} <= set(catalog.spaces)
