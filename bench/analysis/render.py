"""One renderer: a document as a list of blocks, written out as Markdown, HTML or a console table.

Blocks are tuples:
    ("h1" | "h2" | "h3", text)
    ("p", text)                 text may hold **bold**, *emphasis* and `code`, the only Markdown the HTML renders
    ("ul", [text, ...])
    ("table", header, rows)     header: list of str; rows: lists of str (format numbers before)
    ("img", src, alt)

A report or comparison is built once as blocks and rendered twice, so the .md and the .html always
say the same thing, without a Markdown converter.
"""
from __future__ import annotations

import html as _html
import math
import re

# Looked at in headless Chromium at 1280 x 800 (tests/test_browser.py): prose keeps a readable width, tables get
# the whole column of a 1280-px window, and one wider still scrolls in its own box instead of widening the page;
# short cells (numbers, dates, "Welch's t-test") never break mid-value, long ones (reasons, notes) wrap; headers and
# text read from the left.
CSS = ("body{font-family:system-ui,sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222;"
       "line-height:1.4}p,ul{max-width:1100px}.table{overflow-x:auto;margin:.5em 0 1.5em}"
       "table{border-collapse:collapse}"
       "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
       "th{background:#f3f3f3}td{font-variant-numeric:tabular-nums;min-width:10em}td.short{white-space:nowrap;min-width:0}"
       "img{max-width:100%;height:auto}code{overflow-wrap:anywhere}")
SHORT_CELL = 16  # characters: a cell up to this long (a number with its unit, a date) stays on one line


# ---------------------------------------------------------------- cells

def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ratio(value, digits: int = 2, suffix: str = "×") -> str:
    return "—" if is_missing(value) or not math.isfinite(value) else f"{value:.{digits}f}{suffix}"


def fmt_axis(value) -> str:
    """A sweep value or seed: integral floats (pandas reads NaN-holding int columns as float) as ints."""
    if is_missing(value):
        return "—"
    if isinstance(value, str):  # a text axis: dtype, task
        return value
    if type(value).__name__ in ("bool", "bool_"):  # bidirectional (numpy's bool is no int subclass)
        return str(bool(value)).lower()
    return str(int(value)) if float(value).is_integer() else str(value)


def fmt_point(values: dict) -> str:
    """A sweep point, e.g. "batch_size=32, dtype=bfloat16"."""
    return ", ".join(f"{axis}={fmt_axis(value)}" for axis, value in values.items())


def fmt_setting(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {fmt_setting(v)}" for k, v in value.items()) or "—"
    return "—" if value is None or value == "" else str(value)


# ---------------------------------------------------------------- Markdown

def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + args[0])
        elif kind == "p":
            out.append(args[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in args[0]))
        elif kind == "table":
            header, rows = args
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{args[1]}]({args[0]})")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML

# *word* or *a few words*: a single star at a word's edge, not the × or a star inside a product like 2*H
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")


def _inline_html(text: str) -> str:
    """Escapes, then renders **bold**, `code` and, outside code, *emphasis*."""
    parts = _html.escape(text).split("**")
    text = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else _EMPHASIS.sub(r"<em>\1</em>", p) for i, p in enumerate(parts))


def _cell(tag: str, value) -> str:
    text = str(value)
    short = " class='short'" if len(text) <= SHORT_CELL else ""
    return f"<{tag}{short}>{_html.escape(text)}</{tag}>"


def html(blocks: list[tuple], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_html.escape(args[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(args[0])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in args[0]) + "</ul>")
        elif kind == "table":
            header, rows = args
            head = "".join(f"<th>{_html.escape(str(h))}</th>" for h in header)  # headers may wrap
            body = "".join("<tr>" + "".join(_cell("td", c) for c in row) + "</tr>" for row in rows)
            out.append(f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
        elif kind == "img":
            out.append(f"<p><img src='{_html.escape(args[0])}' alt='{_html.escape(args[1])}'></p>")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n".join(out) + "\n</body></html>\n"


# ---------------------------------------------------------------- console

def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, for a terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(r: list[str]) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
