"""A knob or a metric is one table entry: added in a fixture, it reaches every place derived from it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import config as config_mod
from bench import metrics, run_command, schema
from bench.analysis import compare, report
from bench.config import Config, knob
from tests.fixtures.results_factory import make_compare_fixture

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)


@dataclass(frozen=True)
class WithNewKnobs(Config):
    dropout: float = knob(0.0, "dropout between LSTM layers", flag="--dropout", column=True)
    width: int = knob(8, "a new sweepable size", flag="--width", sweep=True)


@pytest.fixture
def new_knobs(monkeypatch):
    monkeypatch.setattr(config_mod, "Config", WithNewKnobs)


def test_a_new_config_field_reaches_parser_row_columns_and_settings(new_knobs):
    args = run_command.parse_args(["--dropout", "0.25", "--width", "16", "--backends", "loop", "--sweep", "width=4,8"])
    config = run_command.build_config(args)
    assert (config.dropout, config.width, config.sweep) == (0.25, 16, {"width": [4, 8]})
    from bench.executors import Cell
    from bench.rows import run_row
    row = run_row(Cell("loop-run", "loop", 0, config), torch.device("cpu"), status="skipped")
    assert (row["dropout"], row["width"]) == (0.25, 16)
    assert {"dropout", "width"} <= set(schema.run_columns())
    assert "width" in schema.key_columns() and "dropout" not in schema.key_columns()
    assert config_mod.sweep_axes()[-1] == "width"
    settings = report.config_rows({"config": config.to_dict()})
    assert ["config.dropout", "0.25"] in settings and ["config.width", "16"] in settings
    # the settings table lists known keys in table order, before keys it does not know
    saved = config.to_dict() | {"from_an_older_version": 1}
    names = [name for name, _ in report.config_rows({"config": saved})]
    assert names.index("config.width") < names.index("config.from_an_older_version")


def test_without_the_fixture_the_new_flag_is_unknown(capsys):
    assert run_command.parse_args(["--dropout", "0.25"]) == 2
    assert "unrecognized arguments: --dropout" in capsys.readouterr().err


def test_every_flag_of_the_table_parses_to_its_field():
    args = run_command.parse_args(["--batch-size", "32", "--hidden", "16", "--layers", "3", "--seq-len", "56",
                              "--train-limit", "100", "--warmup-steps", "2", "--no-isolate", "--lr", "0.01",
                              "--data-root", "/tmp/x", "--seeds", "1,2", "--threads", "1"])
    config = run_command.build_config(args)
    sizes = (config.batch_size, config.hidden_size, config.num_layers, config.seq_len, config.input_size)
    assert sizes == (32, 16, 3, 56, 14)
    assert (config.train_limit, config.warmup_steps, config.isolate, config.lr) == (100, 2, False, 0.01)
    assert (config.data_root, config.seeds, config.threads) == ("/tmp/x", (1, 2), 1)


GRAD_NORM = metrics.Metric("grad_norm", "Gradient norm", fmt="{:.3f}", higher_is_better=False, report=True,
                           plot=True, note="Mean L2 norm of the gradients over the steady-state steps.")


def add_grad_norm(directory: Path, values: dict[str, float]) -> None:
    """What the training code would have written for the new metric."""
    runs = pd.read_csv(directory / "runs.csv")
    runs["grad_norm"] = runs["backend"].map(values)
    runs.to_csv(directory / "runs.csv", index=False)


def test_a_new_metric_reaches_report_plots_and_compare(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "METRICS", [*metrics.METRICS, GRAD_NORM])
    assert "grad_norm" in schema.run_columns()
    a = make_compare_fixture(tmp_path / "a", rng_seed=1, seeds=(0, 1))
    b = make_compare_fixture(tmp_path / "b", rng_seed=2, seeds=(0, 1))
    add_grad_norm(a, {"cudnn": 1.5, "loop": 2.0})
    add_grad_norm(b, {"cudnn": 1.5, "loop": 4.0})
    text = report.write_report(a).read_text()
    assert "### Gradient norm (lower is better)" in text and "Mean L2 norm of the gradients" in text
    assert "| loop | 2 | 2.000 | 0.000 | 1.33× |" in text  # mean, std, ratio vs cudnn 2.0 / 1.5
    assert (a / "plots" / "bars.png").is_file()  # five plotted metrics: a third row of panels
    _, rows, _, _ = compare.write_compare(a, b, 0.05)
    loop = rows[(rows["backend"] == "loop") & (rows["metric"] == "grad_norm")].iloc[0]
    assert loop["flag"] == "worse" and loop["regression"]  # 4.0 vs 2.0 on both seeds, lower is better
    assert "Gradient norm" in (b / "compare.md").read_text()


@pytest.mark.parametrize("flag, value", [("--hidden", "16"), ("--no-isolate", None), ("--config", "c.toml")])
def test_resume_names_the_flag_the_user_typed(tmp_path, capsys, flag, value):
    assert run_command.cli(["--resume", str(tmp_path), flag, *([value] if value else [])]) == 2
    assert f"--resume uses the saved config; drop {flag}\n" in capsys.readouterr().err


@pytest.mark.parametrize("value, shown", [(1945.893, "1,946"), (4.3431, "4.343"), (0.012345, "0.01235"),
                                          (12345.6, "12,346"), (0.0, "0")])
def test_step_times_keep_four_significant_digits_at_every_scale(value, shown):
    """A 784-step CPU step (seconds) and a GPU step (tens of microseconds) both read at a glance."""
    assert metrics.by_name("step_ms_median").format(value) == shown
