"""Named experiments: small TOML files of config keys shipped with the package (`bench run --experiment NAME`).

Each file is `NAME.toml` in this folder: a `description` line (what `bench list --experiments` shows)
and any keys of bench.config.Config. A preset is the bottom layer of a run's config: a --config file
overrides it and command-line flags override both.
"""
from __future__ import annotations

import tomllib
from importlib import resources

from bench import config as config_mod


class ExperimentError(ValueError):
    """An unknown name or a bad preset: one line, naming the preset."""


def _files() -> dict:
    return {f.name[:-len(".toml")]: f for f in resources.files(__name__).iterdir() if f.name.endswith(".toml")}


def names() -> list[str]:
    return sorted(_files())


def read(name: str) -> tuple[str, dict]:
    """(description, config keys) of a preset, unchecked; ExperimentError if there is no such preset."""
    files = _files()
    if name not in files:
        raise ExperimentError(f"unknown experiment {name!r}; expected one of: {', '.join(sorted(files))}")
    try:
        data = tomllib.loads(files[name].read_text())
    except tomllib.TOMLDecodeError as error:
        raise ExperimentError(f"experiment {name!r}: not valid TOML: {error}") from None
    description = data.pop("description", "")
    if not isinstance(description, str) or not description:
        raise ExperimentError(f"experiment {name!r}: needs a one-line `description`")
    return description, data


def load(name: str) -> dict:
    """The preset's config keys, checked against the config table (ExperimentError names the preset)."""
    _, keys = read(name)
    try:
        config_mod.from_dict(keys)
    except ValueError as error:
        raise ExperimentError(f"experiment {name!r}: {error}") from None
    return keys


def listing() -> list[tuple[str, str]]:
    """(name, description) of every preset, by name."""
    return [(name, read(name)[0]) for name in names()]
