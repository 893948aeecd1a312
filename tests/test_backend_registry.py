"""A new backend is one line in the registry (impls/registry.py): everything else is derived from it.

A throwaway backend registered here, and nowhere else, must reach `bench list`, the default plan of
`bench run`, `bench gpu-check`'s accepted names and groups, and a plot colour.
"""
from __future__ import annotations

import json

import pytest

import impls
from bench import gpu_check
from bench.__main__ import main
from bench.analysis.figures import backend_colors
from bench.config import Config

NAME = "zz-throwaway"


@pytest.fixture
def throwaway(monkeypatch):
    """One registry line: nn.LSTM's own class under a new name, with a colour of its own."""
    monkeypatch.setitem(impls.REGISTRY, NAME, impls.Backend("impls.cudnn:CudnnLSTM", "lstm", "torch",
                                                            "a backend that exists only in this test",
                                                            color="#123456"))
    return NAME


def test_it_reaches_bench_list(throwaway, capsys):
    assert main(["list", "--device", "cpu", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)["backends"]}
    assert listed[throwaway]["runs_here"] and listed[throwaway]["summary"] == "a backend that exists only in this test"


def test_it_reaches_the_default_plan(throwaway, capsys, tmp_path, monkeypatch):
    assert Config().backends == tuple(impls.names()) and Config().backends[-1] == throwaway
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--dry-run", "--device", "cpu"]) == 0
    assert f"{throwaway}-s0-b50-h64-l2-t28" in capsys.readouterr().out


def test_a_backend_can_stay_out_of_the_default_plan(monkeypatch):
    monkeypatch.setitem(impls.REGISTRY, NAME, impls.Backend("impls.cudnn:CudnnLSTM", "lstm", "torch", "opt-in only",
                                                            in_default_plan=False))
    assert NAME in impls.names() and NAME not in Config().backends
    assert Config().backends == impls.default_plan()


def test_gpu_check_accepts_it_and_groups_it(throwaway, capsys, monkeypatch):
    assert throwaway in gpu_check.backends() and gpu_check.chosen(throwaway) == [throwaway]
    assert gpu_check.groups(["cudnn", throwaway])[0] == ["cudnn", throwaway]
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert gpu_check.cli(["--backends", f"cudnn,{throwaway}"]) == 2  # accepted: it stops at the missing GPU
    assert "no CUDA device" in capsys.readouterr().err
    compiling = impls.Backend("impls.compiled:CompiledLSTM", "lstm", "inductor", "compiles")
    monkeypatch.setitem(impls.REGISTRY, "zz-compiled", compiling)
    assert gpu_check.groups(["zz-compiled", "cudnn"]) == [["cudnn"], ["zz-compiled"]]
    assert gpu_check.skip_reason("zz-compiled", 784) and not gpu_check.skip_reason(throwaway, 784)


def test_it_gets_its_colour_in_every_plot(throwaway):
    colors = backend_colors(["cudnn", throwaway, "not-registered"])
    assert colors[throwaway] == "#123456" and colors["cudnn"] == impls.spec("cudnn").color
    assert colors["not-registered"] not in {"#123456", colors["cudnn"]}  # a colour of its own, from its name
