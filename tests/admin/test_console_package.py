"""The console's page, stylesheet and script are package data: an installed wheel
serves the same files as the source tree."""

from __future__ import annotations

import fnmatch
import tomllib
from importlib import resources
from pathlib import Path

from sipdispatch.admin.console import STATIC

ROOT = Path(__file__).resolve().parents[2]


def static_files() -> list[str]:
    folder = resources.files("sipdispatch.admin").joinpath("static")
    return sorted(entry.name for entry in folder.iterdir() if entry.is_file())


def test_every_console_file_is_declared_package_data_for_the_wheel() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["sipdispatch.admin"]
    missing = [
        name
        for name in static_files()
        if not any(fnmatch.fnmatch(f"static/{name}", pattern) for pattern in patterns)
    ]
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"


def test_the_page_loads_nothing_from_elsewhere() -> None:
    names = static_files()
    assert {"index.html", "login.html", *STATIC} <= set(names)
    folder = resources.files("sipdispatch.admin").joinpath("static")
    for name in names:
        text = folder.joinpath(name).read_text("utf-8")
        for scheme in ("https://", "http://", "//fonts.", "@import", "url("):
            # The SVG namespace is a name, not something fetched.
            cleaned = text.replace("http://www.w3.org/2000/svg", "")
            assert scheme not in cleaned, f"{name} refers to {scheme}"
