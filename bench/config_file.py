"""Reading a config file (TOML, YAML or JSON) into a table of keys, checked later by bench.config.from_dict.

Whatever the file holds ends in one line: no traceback, no value shown unbounded, no YAML alias expanded,
no file read past MAX_FILE_BYTES. Split from bench.config, which re-exports load_file.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

from bench.brief import brief, cut, one_line

MAX_FILE_BYTES = 64 << 10        # a config file is a few lines; anything near this is not one


def load_file(path: str | Path) -> dict:
    """Keys from a TOML, YAML or JSON file (checked when applied with from_dict). Whatever the file holds
    ends in one line: no traceback, no value shown unbounded, no YAML alias expanded (a few hundred bytes
    of nested aliases expand to gigabytes), no file read past MAX_FILE_BYTES."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {_file(path)} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ValueError(f"config file must end in .toml, .yaml, .yml or .json; got {brief(path.name)}")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"config file {_file(path)} holds {path.stat().st_size:,} bytes; a config file is "
                             f"a few lines (at most {MAX_FILE_BYTES:,} bytes)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"config file {_file(path)} cannot be read: {error}") from None
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {brief(path.name)} must hold a table of keys, got {type(data).__name__}")
    return data


def _parse(path: Path, text: str):
    import yaml
    kind = {".toml": "TOML", ".json": "JSON"}.get(path.suffix, "YAML")
    try:
        if kind == "TOML":
            return tomllib.loads(text)
        if kind == "JSON":
            return json.loads(text)
        return yaml.load(text, Loader=_no_alias_loader()) or {}
    except tomllib.TOMLDecodeError as error:  # its message ends "(at line N, column M)"
        why = str(error)
    except json.JSONDecodeError as error:
        raise ValueError(f"config file {_file(path)}: not valid JSON at line {error.lineno}: {error.msg}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"config file {_file(path)}: not valid YAML{where}: "
                         f"{one_line(getattr(error, 'problem', None) or str(error), 200)}") from None
    except RecursionError:
        why = "nested too deeply"
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        why = str(error)
    raise ValueError(f"config file {_file(path)}: not valid {kind}: {one_line(why, 200)}")


def _file(path: Path) -> str:
    return cut(repr(str(path)), 240)


def _no_alias_loader():
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """yaml.safe_load without aliases: `*name` is refused where it is met, before anything expands."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config file", mark)
            return super().compose_node(parent, index)

    return NoAliasLoader
