"""One domain registry (issue 25, item 5): every command reads a domain name through
calib.envs.registry, and a plug-in adds a kind of domain the same way."""

from __future__ import annotations

import pytest

from calib.envs.registry import DomainKind, domain_catalogue, load_domain, parse_domain, register_domain
from calib.errors import UsageError


def test_the_built_in_kinds_and_their_aliases():
    assert parse_domain("airline-mini")[0].name == "airline-mini"
    assert parse_domain("airline-mini:7") == (parse_domain("airline-mini")[0], "7")
    assert parse_domain("mini")[0].name == parse_domain("airline")[0].name == "airline-mini"
    assert parse_domain("taubench:/data/airline")[1] == "/data/airline"
    assert parse_domain("tau2:airline")[0].name == "tau2"
    assert domain_catalogue(None).name == domain_catalogue("airline").name == "airline"
    assert domain_catalogue("tau2:retail").name == "tau2:retail"


@pytest.mark.parametrize("spec, words", [("nosuch", "unknown domain 'nosuch'"), ("taubench", "taubench:PATH"),
                                         ("tau2:nope", "unknown tau2 domain 'nope'"),
                                         ("airline-mini:x", "must be an integer")])
def test_bad_names_are_one_line_usage_errors(spec, words):
    with pytest.raises(UsageError, match=words):
        if spec.startswith("tau2:"):
            domain_catalogue(spec)
        else:
            load_domain(spec)


def test_a_plugin_kind_is_read_by_every_reader():
    mini = load_domain("airline-mini")
    kind = DomainKind("toy", lambda arg, judge: mini, lambda arg: mini.catalogue, "toy[:X]")
    register_domain(kind)
    try:
        assert load_domain("toy:3") is mini
        assert domain_catalogue("toy") is mini.catalogue
        from calib.cli.options import check_domain

        check_domain("toy")  # the CLI's early check accepts it
        with pytest.raises(ValueError, match="already registered"):
            register_domain(kind)
    finally:
        from calib.envs import registry

        registry._KINDS.pop("toy", None)
    with pytest.raises(UsageError, match="unknown domain 'toy'"):
        load_domain("toy")
