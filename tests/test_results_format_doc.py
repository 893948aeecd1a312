"""docs/results-format.md is generated from the schema, metric and knob tables, and the committed copy is current."""
import pytest

from bench import metrics
from tools import results_format


def test_the_committed_results_format_is_what_the_tables_give():
    assert results_format.DOC.read_text() == results_format.render(), (
        "docs/results-format.md is out of date: run `make docs` and commit it")


def test_every_runs_csv_column_is_listed_with_a_meaning():
    from bench.schema import RUN_COLUMNS
    rows = results_format._run_columns()[2:]
    assert [row.split(" | ")[0].strip("| `") for row in rows] == RUN_COLUMNS
    assert all(row.split(" | ")[2].strip(" |") for row in rows), "a column without a meaning"


def test_a_new_metric_appears_in_the_document(monkeypatch):
    new = metrics.Metric("widgets_per_s", "Widget rate", "widgets/s", higher_is_better=True, note="Counted widgets.")
    monkeypatch.setattr(metrics, "METRICS", [*metrics.METRICS, new])
    monkeypatch.setattr("bench.schema.RUN_COLUMNS", [*results_format.schema.RUN_COLUMNS, "widgets_per_s"])
    text = results_format.render()
    assert "| `widgets_per_s` | metric | Widget rate (shown in widgets/s; higher is better). Counted widgets. |" in text
    assert "| `widgets_per_s` | Widget rate | widgets/s |" in text


def test_check_mode_says_when_the_file_is_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results_format, "DOC", tmp_path / "docs" / "results-format.md")
    monkeypatch.setattr(results_format, "ROOT", tmp_path)
    assert results_format.main(["--check"]) == 1
    assert "docs/results-format.md is out of date: run `make docs`" in capsys.readouterr().err
    assert results_format.main([]) == 0
    assert results_format.main(["--check"]) == 0


@pytest.mark.parametrize("column", ["status", "host", "memory_method"])
def test_run_information_meanings_come_from_the_schema_comments(column):
    assert results_format._schema_comments()[column]
