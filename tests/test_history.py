"""`bench history` on fixture results directories: commit order, asv's rule, machines kept apart, old directories."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.analysis import history
from bench.atomic import write_json
from tests.fixtures.results_factory import make_compare_fixture, make_no_baseline_fixture

pytestmark = pytest.mark.usefixtures("unrendered_plots")  # reads the text, not the pixels (tests/fixtures/plots.py)

ROOT = Path(__file__).resolve().parent.parent


def stamp(directory: Path, commit: str, commit_time: str | None, timestamp: str, **env) -> Path:
    """Rewrites the provenance of a fixture directory: which commit made it, when, on what."""
    data = json.loads((directory / "env.json").read_text())
    data.update({"git_commit": commit, "timestamp": timestamp, "git_repo": "", **env})
    if commit_time is None:
        data.pop("git_commit_time", None)
    else:
        data["git_commit_time"] = commit_time
    write_json(directory / "env.json", data)
    return directory


def directory(tmp_path: Path, name: str, rng_seed: int, commit: str, commit_time: str | None,
              timestamp: str = "2024-03-01T00:00:00+00:00", env: dict | None = None, **fixture) -> Path:
    made = make_compare_fixture(tmp_path / name, rng_seed, **fixture)
    return stamp(made, commit, commit_time, timestamp, **(env or {}))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Commit aaaa… then bbbb…, which makes loop 2x slower; cudnn unchanged (3 % noise in both)."""
    base = tmp_path_factory.mktemp("history")
    directory(base, "before", 1, "a" * 40, "2024-02-01T10:00:00+00:00")
    directory(base, "after", 2, "b" * 40, "2024-02-02T10:00:00+00:00", step_factor={"loop": 2.0})
    out = base / "out"
    assert history.cli([str(base / "after"), str(base / "before"), "--out", str(out)]) == 0
    return base, out


def only(table, **key):
    for column, value in key.items():
        table = table[table[column] == value]
    assert len(table) == 1, key
    return table.iloc[0]


def test_the_planted_slowdown_is_named_with_its_commit_and_cudnn_is_not_flagged(planted, capsys):
    base, out = planted
    _, table = history.write_history([str(base / "before"), str(base / "after")], base / "again")
    loop = only(table, backend="loop", commit="b" * 40)
    assert loop["verdict"] == "regression" and loop["previous"] == "a" * 40
    assert loop["ratio"] == pytest.approx(2.0, rel=0.05) and loop["p"] < history.ALPHA
    assert only(table, backend="cudnn", commit="b" * 40)["verdict"] == "unchanged"
    assert set(table.loc[table["commit"] == "a" * 40, "verdict"]) == {"first"}
    text = (out / "history.md").read_text()
    findings = text.split("## Findings")[1].split("\n## ")[0]
    assert "**Regression: loop** 2.0" in findings and "at commit `bbbbbbbb`" in findings
    assert "against `aaaaaaaa`" in findings and "cudnn" not in findings.split("Rule")[0]
    # the history opens with its findings: nothing but the summary line before them
    assert text.index("## Findings") < text.index("## Backend:")
    assert (out / "history.html").read_text().count("<img") == 2
    png = (out / "plots" / "history_loop.png").read_bytes()  # the fast lane's one plot rendered to real pixels
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert not list(out.rglob("*.tmp"))


def test_the_cli_prints_the_findings(tmp_path, capsys):
    directory(tmp_path, "before", 1, "a" * 40, "2024-02-01T10:00:00+00:00")
    directory(tmp_path, "after", 2, "b" * 40, "2024-02-02T10:00:00+00:00", step_factor={"cudnn": 0.5})
    assert history.cli([str(tmp_path / "*"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "Improvement: cudnn 2.0" in printed and "at commit bbbbbbbb" in printed and "1 finding(s)" in printed


def test_commits_are_ordered_by_commit_time_not_by_argument_or_run_order(tmp_path):
    # made in the order c, a, b (run timestamps) and passed in the order b, c, a; committed a, b, c
    directory(tmp_path, "c", 3, "c" * 40, "2024-02-03T00:00:00+00:00", "2024-01-01T00:00:00+00:00")
    directory(tmp_path, "a", 1, "a" * 40, "2024-02-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00")
    directory(tmp_path, "b", 2, "b" * 40, "2024-02-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00",
              step_factor={"loop": 1.5})
    _, table = history.write_history([str(tmp_path / n) for n in "bca"], tmp_path / "out")
    loop = table[table["backend"] == "loop"]
    assert list(loop["commit"].str[0]) == ["a", "b", "c"]
    assert list(loop["verdict"]) == ["first", "regression", "improvement"]  # c undoes b's slowdown


def test_results_of_one_commit_are_pooled_and_reruns_never_compared(tmp_path):
    directory(tmp_path, "one", 1, "a" * 40, "2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
    directory(tmp_path, "two", 2, "a" * 40, "2024-02-01T00:00:00+00:00", "2024-03-02T00:00:00+00:00")
    _, table = history.write_history([str(tmp_path / "*")], tmp_path / "out")
    assert len(table) == 2 and set(table["runs"]) == {6} and set(table["verdict"]) == {"first"}
    assert set(table["samples"].map(len)) == {2 * 3 * 200}
    assert set(table.iloc[0]["dirs"]) == {str(tmp_path / "one"), str(tmp_path / "two")}


def test_machines_are_never_compared(tmp_path):
    directory(tmp_path, "here", 1, "a" * 40, "2024-02-01T00:00:00+00:00")
    directory(tmp_path, "there", 2, "b" * 40, "2024-02-02T00:00:00+00:00", step_factor={"loop": 3.0},
              env={"cpu_model": "Another CPU", "cpu_count": 64})
    _, table = history.write_history([str(tmp_path / "here"), str(tmp_path / "there")], tmp_path / "out")
    assert set(table["machine"]) == {"cpu: Test CPU (2 CPUs)", "cpu: Another CPU (64 CPUs)"}
    assert set(table["verdict"]) == {"first"}
    text = (tmp_path / "out" / "history.md").read_text()
    assert "Nothing to compare" in text and "2 machine(s)" in text


def test_a_gpu_runs_machine_is_its_gpu_and_cpu_runs_on_it_are_another_series(tmp_path):
    made = directory(tmp_path, "gpu", 1, "a" * 40, None, env={"gpu_names": ["NVIDIA H100"], "gpu_count": 1})
    runs = (made / "runs.csv").read_text().replace(",cudnn on cpu,", ",cudnn on cuda,")
    header, *rows = runs.splitlines()
    at = header.split(",").index("device")
    rows = [",".join(v if i != at or "cudnn-" not in r else "cuda:0" for i, v in enumerate(r.split(",")))
            for r in rows]
    (made / "runs.csv").write_text("\n".join([header, *rows]) + "\n")
    runs = history.run_table(history.load_sources([made])[0])
    assert set(runs.loc[runs["backend"] == "cudnn", "machine"]) == {"cuda: NVIDIA H100"}
    assert set(runs.loc[runs["backend"] == "loop", "machine"]) == {"cpu: Test CPU (2 CPUs)"}


def test_the_ratio_and_alpha_options_decide(tmp_path):
    directory(tmp_path, "a", 1, "a" * 40, "2024-02-01T00:00:00+00:00")
    directory(tmp_path, "b", 2, "b" * 40, "2024-02-02T00:00:00+00:00", step_factor={"loop": 2.0})
    names = [str(tmp_path / "a"), str(tmp_path / "b")]
    _, table = history.write_history(names, tmp_path / "o1", ratio_limit=2.5)
    assert only(table, backend="loop", commit="b" * 40)["verdict"] == "unchanged"
    _, table = history.write_history(names, tmp_path / "o2", alpha=1e-300)
    assert only(table, backend="loop", commit="b" * 40)["verdict"] == "inconclusive"


def test_classify_is_asvs_rule():
    rng = np.random.default_rng(0)
    base = 10 * (1 + 0.03 * rng.standard_normal(100))
    assert history.classify(base, base * 1.05).verdict == "unchanged"  # significant, but within 1.1x
    assert history.classify(base, base * 1.3).verdict == "regression"
    assert history.classify(base, base / 1.3).verdict == "improvement"
    few = history.classify(base[:3], base[:3] * 2)  # 3 vs 3 samples: Mann-Whitney cannot reach p < 0.002
    assert few.verdict == "inconclusive" and "not below 0.002" in few.note
    assert history.classify([], base).verdict == "unchanged"


def test_an_older_directory_without_steps_or_new_columns_loads(tmp_path):
    old = make_no_baseline_fixture(tmp_path / "old")  # loop only, no steps.csv rows
    header, *rows = (old / "runs.csv").read_text().splitlines()
    keep = [i for i, c in enumerate(header.split(",")) if c not in ("host", "device_name", "threads", "tf32")]
    (old / "runs.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep)
                                            for line in [header, *rows]) + "\n")
    (old / "steps.csv").unlink(missing_ok=True)
    stamp(old, "a" * 40, None, "2024-01-01T00:00:00+00:00")
    new = make_no_baseline_fixture(tmp_path / "new")
    stamp(new, "b" * 40, None, "2024-01-02T00:00:00+00:00")
    _, table = history.write_history([str(old), str(new)], tmp_path / "out")
    assert set(table["kind"]) == {"run medians"} and set(table["machine"]) == {"cpu: Test CPU (2 CPUs)"}
    # threads and tf32 unrecorded in the old one: another configuration point, never compared with the new one
    assert len(table) == 2 and set(table["verdict"]) == {"first"}
    points = sorted(table["point"])
    assert points[0].startswith("threads=2") and points[1].startswith("threads=—"), points


def test_commit_time_and_subject_come_from_git_when_env_lacks_them(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    shas = []
    for subject, date in (("first change", "2024-05-02T00:00:00+00:00"),
                          ("second change", "2024-05-01T00:00:00+00:00")):
        (repo / "f").write_text(subject)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(git + ["add", "f"], cwd=repo, check=True)
        subprocess.run(git + ["commit", "-q", "-m", subject], cwd=repo, check=True,
                       env={"GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date, "PATH": "/usr/bin:/bin"})
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
        shas.append(head.stdout.strip())
    history.commit_info.cache_clear()
    for name, sha in zip("xy", shas):
        directory(tmp_path, name, 1, sha, None, env={"git_repo": str(repo)})
    sources, _ = history.load_sources([tmp_path / "x", tmp_path / "y"])
    assert [s.subject for s in sources] == ["first change", "second change"]
    assert sources[0].commit_time.isoformat() == "2024-05-02T00:00:00+00:00"
    table = history.entries(sources, history.run_table(sources))
    assert list(table.loc[table["backend"] == "loop", "commit"]) == [shas[1], shas[0]]  # by commit date


def test_envinfo_records_the_commit_time(tmp_path, monkeypatch):
    from bench import envinfo
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "f").write_text("x")
    subprocess.run(git + ["add", "f"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=repo, check=True,
                   env={"GIT_COMMITTER_DATE": "2024-05-02T03:04:05+00:00", "PATH": "/usr/bin:/bin"})
    monkeypatch.chdir(repo)
    assert envinfo.collect()["git_commit_time"] == "2024-05-02T03:04:05+00:00"


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/missing"], "no such directory"),
    (["{tmp}/nothing-*"], "no results directory among"),
    (["{tmp}/empty"], "no results directory"),
    (["{tmp}/empty", "--ratio", "0.9"], "expected --ratio above 1"),
    (["{tmp}/empty", "--alpha", "2"], "expected --ratio above 1 and --alpha between 0 and 1"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    assert history.cli([a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out" / "history.md").exists()


def test_a_globs_other_matches_are_listed_not_fatal(tmp_path):
    directory(tmp_path, "run", 1, "a" * 40, None)
    (tmp_path / "README.md").write_text("not results")
    (tmp_path / "notes").mkdir()
    assert history.cli([str(tmp_path / "*"), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "history.md").read_text()
    assert "Left out:" in text and "README.md` (not a directory)" in text and "notes` (not a results directory" in text
    # a glob that matches nothing (results/runs/* before the first run) is said, not fatal
    # nor are a file the shell's own expansion brought along, or a glob it passed on unmatched
    assert history.cli([str(tmp_path / "run"), str(tmp_path / "README.md"), str(tmp_path / "none-yet" / "*"),
                        "--out", str(tmp_path / "o2")]) == 0
    text = (tmp_path / "o2" / "history.md").read_text()
    assert "none-yet/*` (matches nothing)" in text and "README.md` (not a directory)" in text


@pytest.mark.slow  # a fresh interpreter; the layer contract (test_layers.py) checks the imports statically
def test_history_is_torch_free(planted):
    base, _ = planted
    code = ("import sys; from bench.analysis import history; "
            f"history.write_history([{str(base / 'before')!r}, {str(base / 'after')!r}], {str(base / 'free')!r}); "
            "bad = [m for m in sys.modules if (m == 'torch' or m.startswith(('torch.', 'impls.', 'bench.runner', "
            "'bench.train', 'bench.executors'))) and m != 'impls.registry']; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
