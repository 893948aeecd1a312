"""Plugin backends (impls.plugins): loaded from a file, a module or an installed entry point into the one
registry table, and from there in `bench list`, plans, env.json, the workers, reports, plots and compare.

Subprocess tests (an installed example plugin, `bench run` end to end) are in tests/test_plugin_install.py.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

import impls
from bench import runner
from bench.__main__ import main
from bench.analysis import compare, report
from bench.analysis.figures import backend_colors
from bench.atomic import write_json
from bench.config import Config, from_dict
from bench.executors import Cell, LocalExecutor, run_cell
from bench.planning import Device
from impls import plugins
from tests.fixtures.results_factory import ENV, run_row, write_run

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"
FINE, BROKEN, SHADOWS = FIXTURES / "fine.py", FIXTURES / "broken.py", FIXTURES / "shadows_cudnn.py"


@pytest.fixture(autouse=True)
def no_plugins():
    """Every test starts with the built-in table and leaves it (and sys.path) as it found it."""
    saved_path = list(sys.path)
    with plugins.isolated():
        yield
    sys.path[:] = saved_path


def write_plugin(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("import impls\nfrom impls.loop import LoopLSTM\n" + body)
    return path


def fake_distribution(site: Path, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """An installed distribution as importlib.metadata finds it: dist-info with entry points, and its modules."""
    info = site / "fakeplug-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[lstm_bench.backends]\n"
                                           + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, text in modules.items():
        (site / f"{name}.py").write_text(text)
    return site


# ---------------------------------------------------------------- loading and registering

def test_a_file_plugin_is_registered_with_its_origin_and_sha256():
    loaded = plugins.load([str(FINE)], entry_points=False)
    assert [p.name for p in loaded] == ["file-loop"] and "file-loop" in impls.names()
    plugin = plugins.LOADED["file-loop"]
    assert (plugin.kind, plugin.source) == ("file", str(FINE.resolve()))
    assert plugin.version == "sha256:" + hashlib.sha256(FINE.read_bytes()).hexdigest()
    module = impls.build("file-loop", 3, 4, 2, batch_first=True)  # the factory is the class itself
    assert type(module).__name__ == "LoopLSTM" and module(torch.randn(2, 5, 3))[0].shape == (2, 5, 4)
    assert impls.availability("file-loop", "cpu").ok


def test_loading_twice_is_a_no_op_and_a_relative_path_is_the_same_plugin(monkeypatch):
    plugins.load([str(FINE)], entry_points=False)
    before = dict(impls.REGISTRY)
    monkeypatch.chdir(FIXTURES)
    plugins.load(["fine.py", str(FINE)], entry_points=False)
    assert impls.REGISTRY == before and list(plugins.LOADED) == ["file-loop"]


def test_a_module_plugin_and_its_version(tmp_path, monkeypatch):
    (tmp_path / "my_backends.py").write_text(
        "import impls\nBACKENDS = {'mod-cudnn': impls.Backend('impls.cudnn:CudnnLSTM', 'lstm', 'torch', 'by name')}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load(["my_backends"], entry_points=False)
    plugin = plugins.LOADED["mod-cudnn"]
    assert plugin.kind == "module" and plugin.version.startswith("sha256:")  # on the path, not installed
    assert impls.factory_class("mod-cudnn").__name__ == "CudnnLSTM"


@pytest.mark.parametrize("body,message", [
    ("raise RuntimeError('boom')\n", "import failed: RuntimeError: boom"),
    ("x = 1\n", "expected BACKENDS, a non-empty dict of backend name -> impls.Backend; found none"),
    ("BACKENDS = {}\n", "found dict"),
    ("BACKENDS = {'a': ('impls.loop:LoopLSTM', 'lstm')}\n", "expected an impls.Backend(factory, family, needs"),
    ("BACKENDS = {'Bad Name': impls.Backend(LoopLSTM, 'lstm', 'torch', 's')}\n", "must be 1-40 characters"),
    ("BACKENDS = {'a': impls.Backend(LoopLSTM, 'rnn', 'torch', 's')}\n", "family must be one of lstm, gru, got 'rnn'"),
    ("BACKENDS = {'a': impls.Backend(LoopLSTM, 'lstm', 'cuda', 's')}\n", "needs must be one of torch, triton"),
    ("BACKENDS = {'a': impls.Backend('LoopLSTM', 'lstm', 'torch', 's')}\n", "factory must be the nn.Module class or"),
    ("BACKENDS = {'a': impls.Backend(LoopLSTM, 'lstm', 'torch', 's', color='red')}\n", "color must be '' or '#rrggbb'"),
    ("BACKENDS = {'a': impls.Backend(LoopLSTM, 'lstm', 'torch', 's', supports=frozenset({'fast'}))}\n",
     "supports must be a subset of"),
])
def test_a_bad_plugin_is_one_line_and_registers_nothing(tmp_path, body, message):
    path = write_plugin(tmp_path, "bad.py", body)
    with pytest.raises(plugins.PluginError) as raised:
        plugins.load([str(path)], entry_points=False)
    assert message in str(raised.value) and "\n" not in str(raised.value) and str(path) in str(raised.value)
    assert set(impls.names()) == impls.registry.BUILTIN


def test_a_plugin_may_not_shadow_a_built_in_or_another_plugin(tmp_path):
    with pytest.raises(plugins.PluginError, match="backend name 'cudnn' is built in; a plugin must choose another"):
        plugins.load([str(SHADOWS)], entry_points=False)
    assert impls.spec("cudnn").factory == "impls.cudnn:CudnnLSTM"
    plugins.load([str(FINE)], entry_points=False)
    twin = write_plugin(tmp_path, "twin.py",
                        "BACKENDS = {'file-loop': impls.Backend(LoopLSTM, 'lstm', 'torch', 's')}\n")
    with pytest.raises(plugins.PluginError, match=f"already taken by file {FINE.resolve()}"):
        plugins.load([str(twin)], entry_points=False)


def test_missing_file_and_missing_module_say_what_was_expected():
    with pytest.raises(plugins.PluginError, match="no such file; expected a .py file defining BACKENDS"):
        plugins.load(["/nowhere/mine.py"], entry_points=False)
    with pytest.raises(plugins.PluginError, match="no module named 'no_such_plugin_module'"):
        plugins.load(["no_such_plugin_module"], entry_points=False)


def test_entry_points_are_found_loaded_and_a_broken_one_is_recorded_not_raised(tmp_path, monkeypatch):
    site = fake_distribution(tmp_path, {"ep-cudnn": "fake_ok:BACKEND", "ep-broken": "fake_broken:BACKEND"}, {
        "fake_ok": "import impls\nBACKEND = impls.Backend('impls.cudnn:CudnnLSTM', 'lstm', 'torch', 'via entry point',"
                   " color='#abcdef')\n",
        "fake_broken": "raise ImportError('needs a library that is not here')\n"})
    monkeypatch.syspath_prepend(str(site))
    plugins.load()
    assert plugins.LOADED["ep-cudnn"].version == "fakeplug 0.3"
    assert plugins.LOADED["ep-cudnn"].origin == "entry point ep-cudnn = fake_ok:BACKEND"
    assert "needs a library that is not here" in plugins.BROKEN["ep-broken"] and "ep-broken" not in impls.REGISTRY
    assert plugins.unknown("ep-broken").startswith("backend 'ep-broken' is not available: plugin entry point ep-broken")


def test_an_entry_point_named_like_a_built_in_is_refused(tmp_path, monkeypatch):
    site = fake_distribution(tmp_path, {"loop": "fake_loop:BACKEND"}, {
        "fake_loop": "import impls\nBACKEND = impls.Backend('impls.cudnn:CudnnLSTM', 'lstm', 'torch', 'imposter')\n"})
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(plugins.PluginError, match="backend name 'loop' is built in"):
        plugins.load()
    assert impls.spec("loop").factory == "impls.loop:LoopLSTM"


# ---------------------------------------------------------------- the commands

def test_bench_list_shows_plugins_with_their_origin_and_broken_ones_with_why(tmp_path, monkeypatch, capsys):
    site = fake_distribution(tmp_path, {"ep-broken": "fake_broken:BACKEND"},
                             {"fake_broken": "raise ImportError('needs a library that is not here')\n"})
    monkeypatch.syspath_prepend(str(site))
    assert main(["list", "--device", "cpu", "--json", "--plugin", str(FINE)]) == 0
    captured = capsys.readouterr()
    rows = {row["name"]: row for row in json.loads(captured.out)["backends"]}
    assert rows["file-loop"]["origin"].startswith(f"plugin: file {FINE.resolve()} (sha256:")
    assert rows["file-loop"]["runs_here"] and rows["cudnn"]["origin"] == "built-in"
    assert not rows["ep-broken"]["runs_here"] and "needs a library that is not here" in rows["ep-broken"]["reason"]
    assert "warning: plugin entry point ep-broken" in captured.err
    assert main(["list", "--device", "cpu", "--plugin", str(FINE)]) == 0
    assert f"from: file {FINE.resolve()}" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["list"], ["run", "--dry-run"], ["check", "loop"], ["gpu-check"]])
def test_a_broken_or_shadowing_plugin_is_one_line_exit_2(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for plugin, message in ((BROKEN, "import failed: RuntimeError: this plugin is broken on purpose"),
                            (SHADOWS, "backend name 'cudnn' is built in")):
        assert main(command + ["--plugin", str(plugin)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_plugin_reaches_the_default_plan(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--dry-run", "--device", "cpu", "--plugin", str(FINE)]) == 0
    assert "file-loop-s0-b50-h64-l2-t28" in capsys.readouterr().out  # in the default plan, as a built-in


def test_a_broken_entry_point_asked_for_is_exit_2_saying_why(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    site = fake_distribution(tmp_path / "site", {"ep-broken": "fake_broken:BACKEND"},
                             {"fake_broken": "raise ImportError('needs a library that is not here')\n"})
    monkeypatch.syspath_prepend(str(site))
    assert main(["run", "--dry-run", "--backends", "cudnn,ep-broken"]) == 2
    assert "error: backend 'ep-broken' is not available: plugin entry point ep-broken" in capsys.readouterr().err


def test_the_plugins_key_of_a_config_file_loads_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(f'plugins = ["{FINE}"]\nbackends = ["cudnn", "file-loop"]\n')
    assert main(["run", "--dry-run", "--config", "c.toml"]) == 0
    assert "file-loop-s0-b50" in capsys.readouterr().out


def test_a_resume_loads_the_plugins_its_saved_config_names(tmp_path, capsys):
    directory = tmp_path / "run"
    directory.mkdir()
    write_json(directory / "env.json", {**ENV, "config": {**Config().to_dict(), "backends": ["cudnn", "file-loop"],
                                                          "plugins": [str(FINE.resolve())]}})
    assert main(["run", "--resume", str(directory), "--dry-run"]) == 0
    assert "file-loop-s0-b50-h64-l2-t28" in capsys.readouterr().out
    assert main(["run", "--resume", str(directory), "--plugin", str(FINE), "--dry-run"]) == 2
    assert "--resume uses the saved config; drop --plugin" in capsys.readouterr().err


# ---------------------------------------------------------------- workers, env.json

def test_the_worker_loads_the_runs_plugins_itself():
    plugins.load([str(FINE)], entry_points=False)
    config = from_dict(dict(backends=("file-loop",), plugins=(str(FINE),)))
    with plugins.isolated():  # as a fresh worker: the built-in table only
        plugins.ensure("file-loop", config.plugins)
        assert impls.spec("file-loop").summary == "the loop backend, loaded from a file"
    with plugins.isolated():  # a name no plugin offers: left to the training code's own refusal
        with pytest.raises(ValueError, match="unknown backend 'not-there'"):
            run_cell(lambda config, backend, *a: impls.build(backend, 3, 4), Config(), "not-there", 0, None,
                     torch.device("cpu"))


def test_a_worker_loads_only_what_its_backend_needs():
    with plugins.isolated():
        plugins.ensure("cudnn", [str(BROKEN)])  # a built-in needs no plugin: a broken one does not touch it
        plugins.ensure("file-loop", [str(BROKEN), str(FINE)])
        assert "file-loop" in impls.REGISTRY
    with plugins.isolated(), pytest.raises(plugins.PluginError) as raised:
        plugins.ensure("other", [str(BROKEN), str(FINE)])
    assert str(raised.value) == (f"plugin {BROKEN}: import failed: RuntimeError: this plugin is broken on purpose "
                                 "(in the worker process)")


def test_a_plugin_that_fails_to_import_where_the_cell_runs_is_a_failed_row_saying_why():
    """In-process executor (isolate off), so the failure is the worker side's own: the forked worker's twin is
    tests/test_plugin_install.py (a plugin that imports in the driver and fails in the worker)."""
    config = from_dict(dict(backends=("cudnn",), plugins=(str(BROKEN),), isolate=False))
    outcome = LocalExecutor()._one(Cell("mine-s0", "mine", 0, config), None, torch.device("cpu"))
    assert outcome.reason.startswith(f"PluginError: plugin {BROKEN}: import failed: RuntimeError: this plugin is "
                                     "broken on purpose (in the worker process)")


class _Executor:
    def describe(self, device=None):
        return {"name": "test"}


def test_env_json_records_each_plugins_origin_version_and_colour(tmp_path):
    plugins.load([str(FINE)], entry_points=False)
    config = from_dict(dict(backends=("cudnn", "file-loop"), plugins=(str(FINE),)))
    env = runner.start_env(tmp_path, {}, config, Device("cpu"), _Executor())
    saved = json.loads((tmp_path / "env.json").read_text())
    assert saved["plugins"] == env["plugins"] == {"file-loop": {
        "kind": "file", "source": str(FINE.resolve()), "version": plugins.LOADED["file-loop"].version,
        "family": "lstm", "summary": "the loop backend, loaded from a file", "color": ""}}
    assert saved["config"]["plugins"] == [str(FINE.resolve())]
    runner.start_env(tmp_path, {}, from_dict(dict(backends=("cudnn",))), Device("cpu"), _Executor())
    assert "plugins" not in json.loads((tmp_path / "env.json").read_text())  # only plugins the plan uses


# ---------------------------------------------------------------- the analysis side: report, plots, compare

def plugin_results(directory: Path, step: float, color: str = "#abcdef") -> Path:
    directory.mkdir()
    env = {**ENV, "config": Config().replace(backends=("cudnn", "my-lstm"), seeds=(0, 1, 2)).to_dict(),
           "plugins": {"my-lstm": {"kind": "entry point", "source": "my-lstm = mine:BACKEND", "version": "mine 1.0",
                                   "family": "lstm", "summary": "my own LSTM", "color": color}}}
    write_json(directory / "env.json", env)
    for backend, ms in (("cudnn", 10.0), ("my-lstm", step)):
        for seed in (0, 1, 2):
            write_run(directory, run_row(backend, seed, test_accuracy=0.9, train_samples_per_s=5000 / ms,
                                         step_ms_median=ms), step_ms=[ms * (1 + 0.01 * k) for k in range(8)])
    return directory


@pytest.mark.usefixtures("unrendered_plots")
def test_a_report_shows_plugin_backends_with_origin_version_and_their_colour(tmp_path):
    directory = plugin_results(tmp_path / "a", 8.0)
    text = report.write_report(directory).read_text()
    assert "### Plugin backends" in text
    assert "| my-lstm | entry point my-lstm = mine:BACKEND | mine 1.0 | my own LSTM |" in text
    assert (directory / "plots" / "bars.png").is_file()
    from bench.analysis import results
    colors = backend_colors(["cudnn", "my-lstm"], results.load(directory).env)
    assert colors == {"cudnn": "#1f77b4", "my-lstm": "#abcdef"}
    assert backend_colors(["cudnn", "my-lstm"])["my-lstm"] not in ("", "#1f77b4")  # no env: one from the name


def test_compare_sets_a_plugin_beside_the_built_ins_and_names_a_version_change(tmp_path, capsys):
    a = plugin_results(tmp_path / "a", 8.0)
    b = plugin_results(tmp_path / "b", 16.0)
    env = json.loads((b / "env.json").read_text())
    env["plugins"]["my-lstm"]["version"] = "mine 1.1"
    write_json(b / "env.json", env)
    _, rows, _, diffs = compare.write_compare(a, b, 0.05, tmp_path / "out")
    slower = rows[(rows["backend"] == "my-lstm") & (rows["metric"] == "step_ms_median")].iloc[0]
    assert slower["ratio"] == pytest.approx(2.0, rel=0.05)
    assert ("plugins.my-lstm.version", "mine 1.0", "mine 1.1") in diffs
