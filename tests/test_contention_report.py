"""A contended run is said so where its numbers are read: the report's headline and section, and compare."""
import csv
from pathlib import Path

import pytest

from bench.analysis import compare, machine, report, results
from tests.fixtures.results_factory import make_compare_fixture

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)


def mark_contended(directory: Path, backend: str) -> None:
    path = directory / "runs.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        busy = row["backend"] == backend
        row.update(contended=str(busy), cpu_share="0.41" if busy else "0.97", others_cores="1.2" if busy else "0.05",
                   load_start="3.1", load_end="3.3", cpu_share_method="schedstat")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_report_headline_says_the_times_were_taken_while_other_work_ran(tmp_path):
    directory = make_compare_fixture(tmp_path / "b", rng_seed=2)
    mark_contended(directory, "loop")
    res = results.load(directory)
    assert list(machine.contended_runs(res.runs)["backend"]) == ["loop"] * 3
    text = "\n".join(str(b) for b in report.build_blocks(res, {}))
    headline = text.split("Runs not measured")[0]
    assert "These times were taken while other work ran:** 3 of 6 runs" in headline
    assert "loop seed 0: cpu share 41 %, other work 1.20 cores" in headline and "cudnn seed" not in headline
    assert "The machine during the runs" in text and "**yes**" in text


def test_an_uncontended_report_says_nothing_of_it(tmp_path):
    directory = make_compare_fixture(tmp_path / "a", rng_seed=1)
    mark_contended(directory, "none")
    text = "\n".join(str(b) for b in report.build_blocks(results.load(directory), {}))
    assert "other work ran" not in text and "The machine during the runs" in text


def test_compare_warns_about_the_side_that_was_contended(tmp_path, capsys):
    a = make_compare_fixture(tmp_path / "a", rng_seed=1)
    b = make_compare_fixture(tmp_path / "b", rng_seed=2)
    mark_contended(b, "loop")
    path, *_ = compare.write_compare(a, b, 0.05)
    header = path.read_text().split("## Differences")[0]
    assert "**Contended:** B: 3 of 6 run(s) were contended" in header and "A: " not in header.split("Contended")[1]
    compare.cli([str(a), str(b)])
    assert "warning: B: 3 of 6 run(s) were contended (other work ran: loop seed 0, loop seed 1, loop seed 2)" in \
        capsys.readouterr().out


def test_report_shows_where_the_wall_time_went_and_compare_does_not_call_it_a_difference(tmp_path):
    import json

    from bench import walltime
    a = make_compare_fixture(tmp_path / "a", rng_seed=1)
    b = make_compare_fixture(tmp_path / "b", rng_seed=2)
    for directory, total in ((a, 20.0), (b, 30.0)):
        path = directory / "runs.csv"
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row.update(startup_s="0.4", numerics_s="0.2", memory_s="0.1", profile_s="0.3")
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        marks = {"process_start": 1000.0, "cells_start": 1002.0, "cells_end": 1000.0 + total - 1, "end": 1000.0 + total}
        wall = walltime.summary(marks, {"x": {"at": 1002.0, "started": 1002.5}}, [])
        env = json.loads((directory / "env.json").read_text())
        (directory / "env.json").write_text(json.dumps(env | {"wall_time": [wall]}))
    text = "\n".join(str(block) for block in machine.time_blocks(results.load(b)))  # the report's section
    assert "Where the wall time goes" in text and "30.0 s in all" in text and "to the first run 2.5 s" in text
    assert "the GEMM peak probe 1.0 s" in text
    assert not any(name.startswith("wall_time") for name, *_ in compare.differences(results.load(a), results.load(b)))
