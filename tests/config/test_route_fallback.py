"""``[[route]] fallback``: the sets tried after the rule's own (Kamailio's
``ds_select_routes``), read from TOML, and the one-line errors of a wrong one."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from sipdispatch.config import ConfigError, FallbackSet, RouteRule, parse_config


def rule_from(toml: str) -> RouteRule:
    [rule] = parse_config(tomllib.loads(toml), "t.toml").routes
    return rule


def error_for(route: dict[str, Any], **tables: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config({"route": [{"set": 1, **route}], **tables}, "t.toml")
    return info.value


def test_a_rule_without_fallback_has_none() -> None:
    assert rule_from("[[route]]\nset = 1\n").fallback == ()


def test_a_bare_set_id_takes_the_rules_algorithm_and_a_table_its_own() -> None:
    rule = rule_from(
        "[[route]]\nset = 1\nalgorithm = 4\n"
        'fallback = [2, { set = 3, algorithm = 8 }, { set = 4, algorithm = "weight" }]\n'
    )
    assert rule.fallback == (FallbackSet(2), FallbackSet(3, 8), FallbackSet(4, 9))
    assert rule.fallback_algorithms() == ((2, 4), (3, 8), (4, 9))


def test_the_algorithm_of_a_fallback_table_takes_names_in_any_case_and_aliases() -> None:
    rule = rule_from('[[route]]\nset = 1\nfallback = [{ set = 2, algorithm = "SERIAL" }]\n')
    assert rule.fallback_algorithms() == ((2, 8),)


def test_a_table_without_algorithm_takes_the_rules_as_a_bare_id_does() -> None:
    rule = rule_from("[[route]]\nset = 1\nalgorithm = 8\nfallback = [{ set = 2 }]\n")
    assert rule.fallback_algorithms() == ((2, 8),)


def test_the_rule_built_in_python_takes_fallback_sets_as_the_file_does() -> None:
    rule = RouteRule(set_id=1, fallback=[2, {"set": 3, "algorithm": "serial"}])  # type: ignore[arg-type]
    assert rule.fallback == (FallbackSet(2), FallbackSet(3, 8))


def test_fallback_that_is_not_an_array_names_what_is_allowed() -> None:
    error = error_for({"fallback": 2})
    assert error.key == "route[0].fallback"
    assert str(error) == (
        "config: t.toml: route[0].fallback = 2: must be an array of destination set ids or "
        'inline tables { set = N, algorithm = A }, e.g. [2, { set = 3, algorithm = "priority" }]'
    )


@pytest.mark.parametrize("item", [-1, True, "2", 2.0, [2]])
def test_an_entry_that_is_no_set_id_nor_table_is_named_by_its_index(item: object) -> None:
    error = error_for({"fallback": [2, item]})
    assert error.key == "route[0].fallback[1]"
    assert "must be a destination set id (an integer >= 0) or an inline table" in str(error)


def test_the_rules_own_set_as_a_fallback_is_an_error() -> None:
    error = error_for({"set": 2, "fallback": [3, 2]})
    assert error.key == "route[0].fallback[1]"
    assert str(error) == (
        "config: t.toml: route[0].fallback[1] = 2: set 2 is the rule's own set: a fallback "
        "set must be another set"
    )


def test_a_set_given_twice_is_an_error_naming_the_first() -> None:
    error = error_for({"fallback": [2, {"set": 2, "algorithm": 8}]})
    assert error.key == "route[0].fallback[1]"
    assert str(error) == (
        "config: t.toml: route[0].fallback[1] = {set = 2, algorithm = 8}: set 2 is already "
        "fallback[0]: each set may be given once"
    )


def test_a_table_without_set_says_set_is_needed() -> None:
    error = error_for({"fallback": [{"algorithm": 8}]})
    assert error.key == "route[0].fallback[0]"
    assert str(error).endswith("must give set = N, the destination set id (an integer >= 0)")


def test_an_unknown_key_in_a_fallback_table_lists_the_allowed_ones() -> None:
    error = error_for({"fallback": [{"set": 2, "alg": 8}]})
    assert error.key == "route[0].fallback[0].alg"
    assert str(error).endswith("unknown key; allowed: set, algorithm")


@pytest.mark.parametrize("value", ["2", -2, True])
def test_a_bad_set_in_a_table_is_named(value: object) -> None:
    error = error_for({"fallback": [{"set": value}]})
    assert error.key == "route[0].fallback[0].set"
    assert str(error).endswith("must be an integer >= 0 (destination set id)")


@pytest.mark.parametrize("value", [16, "fastest", "4", True])
def test_an_unknown_algorithm_in_a_table_lists_the_algorithms(value: object) -> None:
    error = error_for({"fallback": [{"set": 2, "algorithm": value}]})
    assert error.key == "route[0].fallback[0].algorithm"
    assert "must be an integer 0..15, 64, 114, 115 or one of hash-callid" in str(error)


@pytest.mark.parametrize("value", [12, "parallel", "PARALLEL"])
def test_parallel_forking_cannot_be_a_fallback_sets_algorithm(value: object) -> None:
    error = error_for({"fallback": [{"set": 2, "algorithm": value}]})
    assert error.key == "route[0].fallback[0].algorithm"
    assert "parallel forking (12) cannot be a fallback set's algorithm" in str(error)


def test_a_bare_set_id_under_a_parallel_rule_says_to_give_its_algorithm() -> None:
    error = error_for({"algorithm": 12, "fallback": [2]})
    assert error.key == "route[0].fallback[0]"
    assert str(error) == (
        "config: t.toml: route[0].fallback[0] = 2: takes the rule's algorithm 12 (parallel "
        "forking), which a fallback set cannot use (a failover tries one destination at a "
        "time): write { set = 2, algorithm = ... }"
    )


def test_a_parallel_rule_may_fall_back_to_sets_with_their_own_algorithm() -> None:
    rule = rule_from(
        '[[route]]\nset = 1\nalgorithm = "parallel"\nfallback = [{ set = 2, algorithm = 4 }]\n'
    )
    assert rule.fallback_algorithms() == ((2, 4),)


def test_a_fallback_hashing_a_header_needs_the_header_as_the_rule_does() -> None:
    error = error_for({"fallback": [{"set": 2, "algorithm": "hash-header"}]})
    assert error.key == "route[0].fallback[0].algorithm"
    assert str(error).endswith("algorithm 7 (hash-header) needs dispatcher.hash_header set")
    rule = parse_config(
        {
            "dispatcher": {"hash_header": "X-Account"},
            "route": [{"set": 1, "fallback": [{"set": 2, "algorithm": 7}]}],
        }
    ).routes[0]
    assert rule.fallback_algorithms() == ((2, 7),)


def test_errors_in_a_later_rule_name_that_rule() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"route": [{"set": 1}, {"set": 2, "fallback": [2]}]})
    assert info.value.key == "route[1].fallback[0]"
