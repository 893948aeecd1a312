"""docs/results-format.md, generated from the tables that define a results directory.

    python -m tools.results_format            # (re)write docs/results-format.md  (make docs)
    python -m tools.results_format --check    # exit 1 if the committed file is out of date

Sources: bench/schema.py (files and column order; a run-information column's meaning is its comment there),
bench/metrics.py (the measured columns) and bench/config.py (the knobs, their defaults and which of them are
columns). tests/test_results_format_doc.py fails when the committed file differs from what this writes.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from bench import config, metrics, predictions, schema

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results-format.md"

RUN_ID_MEANING = ("the run's identity within its directory: backend, seed and any sweep value away from the "
                  "default (bench.planning.run_id)")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value is None or value == {}:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _scale(metric: metrics.Metric) -> str:
    """How a stored value becomes the shown one: ' = stored ÷ 1,048,576' (bytes to MiB), ' = stored × 100'."""
    if metric.scale == 1:
        return ""
    if metric.scale < 1:
        return f" = stored ÷ {1 / metric.scale:,.0f}"
    return f" = stored × {metric.scale:g}"


def _schema_comments() -> dict[str, str]:
    """`"column",  # meaning` lines of bench/schema.py: the run-information columns' meanings."""
    source = Path(schema.__file__).read_text()
    return dict(re.findall(r'^\s*"([a-z_]+)",\s*#\s*(.+?)\s*$', source, flags=re.M))


def _files() -> list[str]:
    rows = [
        [f"`{schema.RUNS_FILE}`", "one row per run (backend × seed × sweep point), columns below; a row is "
                                  "appended atomically when its run ends, ok, skipped or failed"],
        [f"`{schema.CURVES_FILE}`", "the learning curve: " + ", ".join(f"`{c}`" for c in schema.CURVE_COLUMNS)
         + " (the loss is the mean over the last `curve_every` steps)"],
        [f"`{schema.STEPS_FILE}`", "every timed steady-state step: " + ", ".join(f"`{c}`" for c in schema.STEP_COLUMNS)
         + " (for the pooled step-time figures and compare's tests)"],
        [f"`{predictions.PREDICTIONS_DIR}/<run_id>.npy`", "each ok run's per-image correctness on the test set (bools "
                                                          "in test-set order), for compare's paired accuracy test"],
        [f"`{schema.ENV_FILE}`", "versions, hardware, git commit, the plan and the full config (every knob below); "
                                 "the peak GEMM GFLOP/s under `peak`"],
        ["`report.md`, `report.html`, `plots/`", "the report (`python -m bench report DIR`)"],
    ]
    return _table(["file", "content"], rows)


def _run_columns() -> list[str]:
    fields, comments = config.fields(), _schema_comments()
    by_column = {config.column_name(name): name for name, f in fields.items() if f.metadata["column"]}
    known = {m.name: m for m in metrics.METRICS}
    rows = []
    for column in schema.RUN_COLUMNS:
        if column == "run_id":
            rows.append([f"`{column}`", "key", RUN_ID_MEANING])
        elif column in known:
            m = known[column]
            shown = f"shown in {m.unit}{_scale(m)}; " if m.unit else ""
            rows.append([f"`{column}`", "metric", f"{m.title} ({shown}{m.direction}). {m.note}".strip()])
        elif column in by_column:
            name = by_column[column]
            role = "key" if column in schema.KEY_COLUMNS else "config"
            per_run = " (one value per run)" if column != name else ""
            rows.append([f"`{column}`", role, f"knob `{name}`{per_run}: {fields[name].metadata['help']}"])
        elif column in config.DERIVED:
            doc = (getattr(config.Config, column).__doc__ or "").strip()
            doc = doc[:1].lower() + doc[1:]
            rows.append([f"`{column}`", "config", f"derived from `{config.DERIVED[column]}`: {doc}"])
        else:
            rows.append([f"`{column}`", "run", comments.get(column, "")])
    return _table(["column", "kind", "meaning"], rows)


def _knobs() -> list[str]:
    rows = []
    for name, f in config.fields().items():
        meta = f.metadata
        column = config.column_name(name) if meta["column"] else "—"
        rows.append([f"`{name}`", f"`{meta['flag']}`" if meta["flag"] else "file only", _default(f),
                     "yes" if meta["sweep"] else "", column if column == "—" else f"`{column}`", meta["help"]])
    return _table(["knob", "flag", "default", "sweep axis", "runs.csv column", "meaning"], rows)


def _metrics() -> list[str]:
    rows = [[f"`{m.name}`", m.title, m.unit or "—", _scale(m).removeprefix(" = stored "),
             m.direction, "yes" if m.report else "", "yes" if m.plot else "", m.samples]
            for m in metrics.METRICS]
    return _table(["column", "title", "unit shown", "scale", "direction", "report table", "plotted", "samples"],
                  rows)


def render() -> str:
    lines = [
        "# Results format",
        "",
        "<!-- Generated by `make docs` (python -m tools.results_format) from bench/schema.py, bench/metrics.py and",
        "     bench/config.py: edit those, not this file. tests/test_results_format_doc.py checks it is current. -->",
        "",
        "`bench run` writes one directory per invocation (`results/runs/<time>-<host>/` under the current "
        "directory, or `--out DIR`). What it holds:",
        "",
        *_files(),
        "",
        "## runs.csv, column by column",
        "",
        "In file order. *key* columns identify a run (compare matches rows on them; a sweep is several values in "
        "one key column); *run* columns say where and how it ran; *config* columns are knobs of the run's config; "
        "*metric* columns are measured (empty where a run could not measure them, and for skipped and failed "
        "runs). Reading an older runs.csv fills the columns it lacks: knobs with their defaults, the rest empty.",
        "",
        *_run_columns(),
        "",
        "## The measured columns: how the report shows them",
        "",
        "Shown value = stored value × scale, in the unit shown. *report table*: the metric gets a report table and "
        "a row in `compare`; *samples*: what one value is drawn from for summaries and compare's tests (steps: "
        "steps.csv's per-step times pooled; images: a proportion over the test images; seeds: one value per run).",
        "",
        *_metrics(),
        "",
        "## The config (env.json's `config`)",
        "",
        "Every knob, as `bench run` flags, TOML/YAML config files (`--config FILE`, same keys) and presets "
        "(`--experiment NAME`) set it; a file or preset rejects unknown keys.",
        "",
        *_knobs(),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.results_format", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
