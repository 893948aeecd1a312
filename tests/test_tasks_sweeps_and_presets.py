"""Pixel orders (tasks rows and permuted), gradient clipping, multi-axis sweeps with resume, named presets."""
import json
import subprocess
import sys

import pytest
import torch

from bench import backends, experiments, planning, run_command, runner, storage
from bench.config import from_dict
from bench.data import BatchLoader, pixel_order
from tests.fixtures.synthetic import synthetic_mnist

NO_RUN = dict(train_limit=300, batch_size=50, hidden_size=8, warmup_steps=1, eval_batch_size=100, curve_every=2,
              device="cpu", isolate=False)


# ---------------------------------------------------------------- the pixel order

def test_permuted_order_is_a_permutation_fixed_by_its_seed():
    order = pixel_order("permuted", 0)
    assert order.shape == (784,) and order.dtype == torch.int64
    assert torch.equal(order.sort().values, torch.arange(784))           # every pixel exactly once
    assert not torch.equal(order, torch.arange(784))                       # and not reading order
    assert torch.equal(order, pixel_order("permuted", 0))                  # same seed, same order
    assert not torch.equal(order, pixel_order("permuted", 1))              # another seed, another order
    assert pixel_order("rows", 5) is None                                  # reading order: nothing to gather


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_permuted_order_is_the_same_in_another_process_whatever_its_global_rng():
    torch.manual_seed(123)  # the global RNG must not matter
    here = pixel_order("permuted", 7).tolist()
    code = ("import json, torch; torch.manual_seed(999); from bench.data import pixel_order; "
            "print(json.dumps(pixel_order('permuted', 7).tolist()))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(there.stdout) == here


def numbered_images(n):
    """Pixel p of image i holds (i + p) % 256: the fed order can be read back off the tensor."""
    return (torch.arange(n)[:, None] + torch.arange(784)[None, :]).remainder(256).to(torch.uint8).reshape(n, 28, 28)


def test_rows_with_seq_len_784_feeds_one_pixel_a_step_in_reading_order():
    images = numbered_images(3)
    loader = BatchLoader(images, torch.zeros(3, dtype=torch.int64), batch_size=3, seq_len=784, shuffle=False,
                         pixel_order=pixel_order("rows"))
    x, _ = next(iter(loader))
    assert x.shape == (3, 784, 1)
    assert torch.equal((x[:, :, 0] * 255).round().to(torch.uint8), images.reshape(3, 784))


def test_permuted_feeds_train_and_test_images_in_the_same_order_cut_into_steps():
    order = pixel_order("permuted", 3)
    train, test = numbered_images(4), numbered_images(2)
    for images in (train, test):
        loader = BatchLoader(images, torch.zeros(len(images), dtype=torch.int64), batch_size=8, seq_len=28,
                             shuffle=False, pixel_order=order)
        x, _ = next(iter(loader))
        assert x.shape == (len(images), 28, 28)
        fed = (x.reshape(len(images), 784) * 255).round().to(torch.uint8)
        assert torch.equal(fed, images.reshape(len(images), 784)[:, order])


def test_loader_refuses_an_order_that_is_not_a_permutation():
    with pytest.raises(ValueError, match="permutation of the 784"):
        BatchLoader(numbered_images(2), torch.zeros(2, dtype=torch.int64), batch_size=2,
                    pixel_order=torch.zeros(784, dtype=torch.int64))


# ---------------------------------------------------------------- clipping

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_grad_clip_changes_training_and_is_recorded(tmp_path):
    data = synthetic_mnist()
    base = from_dict(NO_RUN | dict(backends=("loop",), lr=0.05))
    plain = runner.execute(base, tmp_path / "a", torch.device("cpu"), data, log=lambda _: None)[0]
    clipped = runner.execute(base.replace(grad_clip=1e-3), tmp_path / "b", torch.device("cpu"), data,
                             log=lambda _: None)[0]
    assert plain["status"] == clipped["status"] == "ok"
    assert clipped["grad_clip"] == 1e-3 and plain["grad_clip"] is None
    assert clipped["final_train_loss"] != plain["final_train_loss"]


# ---------------------------------------------------------------- sweeps over several axes

def test_multi_axis_sweep_is_the_product_with_correct_keys():
    config = from_dict(NO_RUN | dict(backends=("loop", "gru"), sweep={
        "dtype": ["float32", "bfloat16"], "task": ["rows", "permuted"], "hidden_size": [8, 16]}))
    cells = planning.plan(config)
    assert len(cells) == 2 * 2 * 2 * 2
    points = {(p.dtype, p.task, p.hidden_size) for _, _, p in cells}
    assert points == {(d, t, h) for d in ("float32", "bfloat16") for t in ("rows", "permuted") for h in (8, 16)}
    ids = [planning.run_id(b, s, p) for b, s, p in cells]
    assert len(set(ids)) == len(ids)
    # the default task and dtype keep the names older directories were written with
    assert "loop-s0-b50-h8-l2-t28" in ids and "loop-s0-b50-h8-l2-t28-bfloat16-permuted0" in ids


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_dtype_the_device_cannot_do_is_a_skipped_row_in_a_sweep_and_refused_outright(tmp_path, capsys):
    config = from_dict(NO_RUN | dict(backends=("loop",), sweep={"dtype": ["float32", "float16"]}))
    planning.check_config(config, torch.device("cpu"))  # a sweep point is not bad input
    rows = runner.execute(config, tmp_path, torch.device("cpu"), synthetic_mnist(), log=lambda _: None)
    # Skipped rows are written before the executor runs the rest.
    assert [(r["dtype"], r["status"]) for r in rows] == [("float16", "skipped"), ("float32", "ok")]
    assert "float16 needs a CUDA device" in rows[0]["error"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_across_a_multi_axis_sweep(tmp_path, interrupted_run):
    data = synthetic_mnist()
    config = from_dict(NO_RUN | dict(backends=("loop", "gru"), sweep={"task": ["rows", "permuted"],
                                                                      "batch_size": [25, 50]}))
    interrupted_run(6, config, tmp_path, data)
    assert len(storage.load_runs(tmp_path)) == 5
    written = runner.execute(config, tmp_path, torch.device("cpu"), data, log=lambda _: None)
    assert [r["run_id"] for r in written] == [planning.run_id(b, s, p) for b, s, p in planning.plan(config)][5:]
    runs = storage.load_runs(tmp_path)
    assert len(runs) == 8 and runs.run_id.is_unique and (runs.status == "ok").all()
    assert set(zip(runs.task, runs.batch_size)) == {(t, b) for t in ("rows", "permuted") for b in (25, 50)}
    assert (runs.permutation_seed == 0).all()
    assert runner.execute(config, tmp_path, torch.device("cpu"), data, log=lambda _: None) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_sweep_of_text_axes_and_resume_with_its_saved_config(tmp_path, capsys, fake_mnist):
    out = tmp_path / "out"
    argv = ["--backends", "gru", "--train-limit", "300", "--hidden", "8", "--no-isolate", "--device", "cpu",
            "--warmup-steps", "1", "--sweep", "task=rows,permuted", "--sweep", "dtype=float32,bfloat16",
            "--permutation-seed", "4", "--out", str(out)]
    assert run_command.cli(argv) == 0
    runs = storage.load_runs(out)
    assert sorted(zip(runs.task, runs.dtype)) == sorted((t, d) for t in ("rows", "permuted")
                                                         for d in ("float32", "bfloat16"))
    assert (runs.permutation_seed == 4).all()
    saved = json.loads((out / "env.json").read_text())["config"]
    assert saved["sweep"] == {"task": ["rows", "permuted"], "dtype": ["float32", "bfloat16"]}
    assert saved["permutation_seed"] == 4 and saved["task"] == "rows"
    assert run_command.cli(["--resume", str(out)]) == 0 and len(storage.load_runs(out)) == 4


# ---------------------------------------------------------------- presets

@pytest.mark.parametrize("name", experiments.names())
def test_each_preset_parses_and_validates(name):
    description, keys = experiments.read(name)
    assert description and "\n" not in description
    config = from_dict(experiments.load(name))
    assert config.to_dict()  # a full config


def test_presets_for_pixel_permuted_and_scaling_have_their_settings():
    assert {"smoke", "tutorial", "pixel", "permuted", "scaling-hidden", "scaling-batch"} <= set(experiments.names())
    assert from_dict(experiments.load("tutorial")) == from_dict({})
    permuted = from_dict(experiments.load("permuted"))
    assert (permuted.task, permuted.seq_len, permuted.hidden_size) == ("permuted", 784, 128) and permuted.grad_clip
    assert from_dict(experiments.load("pixel")).input_size == 1
    hidden = from_dict(experiments.load("scaling-hidden"))
    assert min(hidden.sweep["hidden_size"]) == 32 and max(hidden.sweep["hidden_size"]) == 512 and hidden.train_limit


def test_preset_then_config_file_then_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("hidden_size = 32\nbatch_size = 25\n")
    args = run_command.parse_args(["--experiment", "permuted", "--config", str(path), "--batch-size", "10"])
    config = run_command.build_config(args)
    assert (config.task, config.seq_len) == ("permuted", 784)         # from the preset
    assert config.hidden_size == 32                                     # the file over the preset
    assert config.batch_size == 10                                      # the flag over both


def test_list_experiments(capsys):
    assert backends.cli(["--experiments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(experiments.names())
    assert any(line.split()[0] == "smoke" for line in lines[1:])
    assert backends.cli(["--experiments", "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} == set(experiments.names())


@pytest.mark.parametrize("text,message", [
    ('description = "x"\nhidden_size = 0\n', "experiment 'broken': config: hidden_size must be a positive integer"),
    ('description = "x"\nwidth = 3\n', "experiment 'broken': config: unknown key(s) 'width'"),
    ('description = "x"\ntask = "spiral"\n', "experiment 'broken': config: task must be one of rows, permuted"),
    ('hidden_size = 32\n', "experiment 'broken': needs a one-line `description`"),
    ('description = "x\n', "experiment 'broken': not valid TOML"),
])
def test_a_bad_preset_is_one_line_exit_2(tmp_path, capsys, monkeypatch, text, message):
    (tmp_path / "broken.toml").write_text(text)
    monkeypatch.setattr(experiments, "_files", lambda: {"broken": tmp_path / "broken.toml"})
    assert run_command.cli(["--experiment", "broken", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unknown_preset_is_one_line_exit_2(tmp_path, capsys):
    assert run_command.cli(["--experiment", "nope", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown experiment 'nope'; expected one of: " + ", ".join(experiments.names()) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_preset_a_run_started_from_is_saved_beside_its_results(tmp_path, fake_mnist):
    out = tmp_path / "out"
    argv = ["--experiment", "smoke", "--backends", "gru", "--train-limit", "300", "--hidden", "8", "--no-isolate",
            "--device", "cpu", "--warmup-steps", "1", "--out", str(out)]
    assert run_command.cli(argv) == 0
    env = json.loads((out / "env.json").read_text())
    assert env["experiment"] == "smoke" and env["config"]["threads"] == 1  # the preset's value, kept
    assert run_command.cli(["--resume", str(out)]) == 0
    assert json.loads((out / "env.json").read_text())["experiment"] == "smoke"
