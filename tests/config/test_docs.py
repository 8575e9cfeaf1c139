"""docs/configuration.md: the key reference is what the schema says, now."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sipdispatch.config import default_config, parse_config
from sipdispatch.config.docs import ALGORITHM_SUMMARIES, main, render_blocks
from sipdispatch.config.reference import file_keys, sections
from sipdispatch.dispatcher.algorithms import REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_md_is_what_the_generator_writes_from_the_schema() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_blocks(text) == text, "run: python -m sipdispatch.config.docs"


def test_configuration_md_has_a_block_for_every_table_and_the_algorithms() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in [where for where, _ in sections() if where] + ["algorithms"]:
        assert f"<!-- BEGIN GENERATED: {name} -->" in text
        assert f"<!-- END GENERATED: {name} -->" in text


def test_generator_rewrites_a_stale_block_and_keeps_the_prose(tmp_path: Path) -> None:
    path = tmp_path / "configuration.md"
    path.write_text(
        "Prose before.\n<!-- BEGIN GENERATED: admin -->\nold table\n"
        "<!-- END GENERATED: admin -->\nProse after.\n",
        encoding="utf-8",
    )
    assert main([str(path), "--check"]) == 1
    assert main([str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("Prose before.\n<!-- BEGIN GENERATED: admin -->\n| key |")
    assert text.endswith("<!-- END GENERATED: admin -->\nProse after.\n")
    assert "old table" not in text
    assert "| `listen` |" in text and "| `token` |" in text
    assert main([str(path), "--check"]) == 0


def test_generator_refuses_an_unknown_or_unclosed_block() -> None:
    with pytest.raises(ValueError, match="unknown generated block"):
        render_blocks("<!-- BEGIN GENERATED: nosuch -->\n<!-- END GENERATED: nosuch -->\n")
    with pytest.raises(ValueError, match="has no"):
        render_blocks("<!-- BEGIN GENERATED: server -->\n")


def test_every_key_of_every_table_has_a_description() -> None:
    for where, cls in sections():
        for key in file_keys(cls, where).values():
            assert key.description, f"{where}.{key.name}"


def test_every_field_has_a_docstring() -> None:
    for _, cls in sections():
        for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
            assert info.description, f"{cls.__name__}.{name}"


def test_every_registered_algorithm_has_a_summary() -> None:
    assert sorted(ALGORITHM_SUMMARIES) == sorted(REGISTRY)


def _documented_defaults() -> list[tuple[str, str, str]]:
    found = []
    for where, cls in sections():
        for key in file_keys(cls, where).values():
            if where and key.default is not None and key.table is None:
                try:
                    tomllib.loads(f"x = {key.default}")
                except tomllib.TOMLDecodeError:
                    continue  # a phrase such as "any method"
                found.append((where, key.name, key.default))
    return found


@pytest.mark.parametrize(("where", "name", "default"), _documented_defaults())
def test_documented_default_written_in_a_file_gives_the_built_in_default(
    where: str, name: str, default: str
) -> None:
    if where.startswith("route"):
        table = "[[route]]\nset = 1\n"
        if where == "route.match":
            table += f"match = {{ {name} = {default} }}\n"
        else:
            table += f"{name} = {default}\n"
        config = parse_config(tomllib.loads(table))
        assert config.routes == parse_config(tomllib.loads("[[route]]\nset = 1\n")).routes
    elif where == "tls":
        # The [tls] table's presence turns TLS on: its defaults are those of the table.
        config = parse_config(tomllib.loads(f"[tls]\n{name} = {default}\n"))
        assert config.tls == parse_config(tomllib.loads("[tls]\n")).tls is not None
    else:
        config = parse_config(tomllib.loads(f"[{where}]\n{name} = {default}\n"))
        assert config == default_config()


def test_defaults_are_documented_for_most_keys() -> None:
    # The parametrized test above must not be empty: every scalar key but the required
    # route.set and the "any ..." match conditions has a default written as TOML.
    assert len(_documented_defaults()) >= 40
