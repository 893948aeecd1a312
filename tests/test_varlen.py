"""Variable length in the harness (issue 24): the rows-trimmed task, the bidirectional / proj_size / packing knobs,
the model fed per packing, the varlen preset and the report's "What packing costs" section."""
from __future__ import annotations

import json

import pytest
import torch

import impls
from bench import config as config_mod
from bench import experiments, planning, run_command, storage
from bench.analysis import compare, report, results, varlen
from bench.config import from_dict
from bench.data import BatchLoader
from bench.data.tasks import inked_lengths, length_counts, trimmed
from bench.model import RowClassifier, Rows, head_width
from tests.fixtures.results_factory import VARLEN_LENGTHS, make_varlen_fixture

NO_RUN = dict(train_limit=300, batch_size=50, hidden_size=8, warmup_steps=1, eval_batch_size=100, curve_every=2,
              device="cpu", isolate=False)


def inked_images(last_rows: list[int]) -> torch.Tensor:
    """One image per entry, ink on rows 0..last (inclusive); last = -1 is a blank image."""
    images = torch.zeros(len(last_rows), 28, 28, dtype=torch.uint8)
    for i, last in enumerate(last_rows):
        images[i, :last + 1, 3] = 200
        if last >= 0:
            images[i, last, 20] = 1  # the faintest ink still counts
    return images


# ---------------------------------------------------------------- the task's lengths

def test_an_image_is_read_down_to_its_last_row_with_ink():
    lengths = inked_lengths(inked_images([27, 0, 13, -1]).reshape(4, 28, 28))
    assert lengths.tolist() == [28, 1, 14, 1]  # a blank image is one step: a sequence cannot be empty
    # two rows a step (seq_len 14): a step has ink when either of its rows has
    assert inked_lengths(inked_images([27, 0, 13, 14]).reshape(4, 14, 56)).tolist() == [14, 1, 7, 8]
    assert length_counts(torch.tensor([3, 1, 3, 28])) == "1:1 3:2 28:1"
    assert trimmed("rows-trimmed") and not trimmed("rows") and not trimmed("permuted")


def test_the_loader_serves_rows_padded_to_the_batch_longest_with_their_lengths():
    images, labels = inked_images([5, 20, 9, 2, 17, 11]), torch.arange(6)
    loader = BatchLoader(images, labels, batch_size=4, trim=True, packing="packed", seed=3)
    seen = []
    for batch, batch_labels in loader:
        assert isinstance(batch, Rows) and batch.lengths.device.type == "cpu"
        assert batch.padded.shape[1] == int(batch.lengths.max())
        assert torch.equal(batch.lengths_on_device, batch.lengths)
        for image, length, label in zip(batch.padded, batch.lengths, batch_labels):
            assert length == [6, 21, 10, 3, 18, 12][label]          # the lengths travel with their images
            assert image[length - 1].abs().sum() > 0 and image[length:].abs().sum() == 0
        seen += batch_labels.tolist()
    assert sorted(seen) == list(range(6))
    assert loader.length_counts() == "3:1 6:1 10:1 12:1 18:1 21:1"
    assert loader.fed_lengths.tolist() == [6, 21, 10, 3, 18, 12]


def test_packing_none_feeds_every_image_whole_whatever_the_task():
    loader = BatchLoader(inked_images([5, 20]), torch.arange(2), batch_size=2, trim=True, packing="none",
                         shuffle=False)
    batch, _ = next(iter(loader))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 28, 28)
    assert loader.fed_lengths.tolist() == [28, 28] and loader.lengths.tolist() == [6, 21]
    # without trimming every image has all its steps, also when packed
    full = BatchLoader(inked_images([5, 20]), torch.arange(2), batch_size=2, packing="packed", shuffle=False)
    batch, _ = next(iter(full))
    assert batch.lengths.tolist() == [28, 28] and batch.padded.shape == (2, 28, 28)
    with pytest.raises(ValueError, match="packing must be one of none, packed, lengths"):
        BatchLoader(inked_images([5]), torch.arange(1), batch_size=1, packing="pad")


# ---------------------------------------------------------------- the model

@pytest.mark.parametrize("packing", ["packed", "lengths"])
@pytest.mark.parametrize("bidirectional, proj_size", [(False, 0), (True, 0), (True, 3)])
def test_the_head_reads_each_image_at_its_own_last_step(packing, bidirectional, proj_size):
    torch.manual_seed(0)
    rnn = impls.build("cudnn", 4, 5, 2, batch_first=True, bidirectional=bidirectional, proj_size=proj_size)
    width = head_width(5, bidirectional, proj_size)
    assert width == (2 if bidirectional else 1) * (proj_size or 5)
    model = RowClassifier(rnn, width, 3, packing).double()
    lengths = torch.tensor([4, 1, 6])
    padded = torch.randn(3, 6, 4, dtype=torch.float64)
    logits = model(Rows(padded, lengths, lengths.clone()))
    # each image alone, cut to its own length, as padded input: the same logits
    alone = RowClassifier(rnn, width, 3).double()
    alone.head = model.head
    expected = torch.cat([alone(padded[i:i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(logits, expected)


def test_a_model_refuses_the_input_its_packing_does_not_take():
    rnn = impls.build("loop", 4, 5, 1, batch_first=True)
    with pytest.raises(TypeError, match="packing=packed needs Rows"):
        RowClassifier(rnn, 5, 3, "packed")(torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match="packing=none takes a padded tensor"):
        RowClassifier(rnn, 5, 3)(Rows(torch.randn(2, 3, 4), torch.tensor([3, 1]), torch.tensor([3, 1])))


# ---------------------------------------------------------------- knobs, plan, preset

def test_the_knobs_are_sweepable_with_flags_and_checked():
    assert {"bidirectional", "proj_size", "packing"} <= set(config_mod.sweep_axes())
    flags = {config_mod.fields()[k].metadata["flag"] for k in ("bidirectional", "proj_size", "packing")}
    assert flags == {"--bidirectional", "--proj-size", "--packing"}
    assert run_command.parse_sweep(["bidirectional=false,TRUE", "packing=none,packed"]) == {
        "bidirectional": [False, True], "packing": ["none", "packed"]}
    with pytest.raises(ValueError, match="--sweep bidirectional: values must be boolean values"):
        run_command.parse_sweep(["bidirectional=maybe"])
    defaults = config_mod.Config()
    assert (defaults.bidirectional, defaults.proj_size, defaults.packing) == (False, 0, "none")


@pytest.mark.parametrize("overrides, message", [
    (dict(proj_size=64), r"proj_size must be 0 \(no projection\) or a positive integer below hidden_size \(64\)"),
    (dict(proj_size=-1), "proj_size must be 0"),
    (dict(packing="pad"), "packing must be one of none, packed, lengths; got 'pad'"),
    (dict(bidirectional="yes"), "bidirectional must be true or false"),
    (dict(task="rows-cut"), "task must be one of rows, permuted, rows-trimmed"),
    (dict(sweep={"hidden_size": [16, 64], "proj_size": [0, 32]}),
     "sweep point hidden_size=16, proj_size=32: proj_size must be 0"),
])
def test_bad_combinations_are_one_line(overrides, message):
    with pytest.raises(ValueError, match=message) as raised:
        from_dict(overrides)
    assert "\n" not in str(raised.value)


def test_packed_full_length_input_is_a_valid_run():
    """Decided: packing=packed on a task whose images all have seq_len steps (rows, permuted) is allowed: it
    measures what the PackedSequence path costs by itself."""
    config = from_dict(NO_RUN | dict(task="permuted", packing="packed"))
    assert planning.run_id("loop", 0, config) == "loop-s0-b50-h8-l2-t28-permuted0-packed"


def test_run_ids_keep_older_names_and_name_the_new_options():
    assert planning.run_id("loop", 0, from_dict(NO_RUN)) == "loop-s0-b50-h8-l2-t28"
    point = from_dict(NO_RUN | dict(task="rows-trimmed", bidirectional=True, proj_size=4, packing="lengths"))
    assert planning.run_id("loop", 0, point) == "loop-s0-b50-h8-l2-t28-rows-trimmed-bi-p4-lengths"


def test_a_backend_without_an_option_would_be_skipped_with_the_reason(tmp_path):
    config = from_dict(NO_RUN | dict(backends=("cudnn", "gru", "triton"), proj_size=4, packing="packed"))
    text = planning.plan_text(config, tmp_path, torch.device("cpu"))
    lines = {line.split(".", 1)[1].split()[0]: line for line in text.splitlines()[1:]}
    assert "would be skipped" not in lines["cudnn-s0-b50-h8-l2-t28-p4-packed"]
    assert "nn.GRU has no proj_size" in lines["gru-s0-b50-h8-l2-t28-p4-packed"]
    assert "would be skipped" in lines["triton-s0-b50-h8-l2-t28-p4-packed"]  # an option or the device: both say


def test_the_varlen_preset_pairs_padded_full_with_packed_trimmed_for_every_backend():
    keys = experiments.load("varlen")
    config = from_dict(keys)
    assert config.task == "rows-trimmed" and config.sweep == {"packing": ["none", "packed"]}
    assert set(config.backends) == set(impls.names())  # every backend: those that cannot are skipped rows
    cells = planning.plan(config)
    assert {(b, p.packing) for b, _, p in cells} == {(b, k) for b in impls.names() for k in ("none", "packed")}


# ---------------------------------------------------------------- the report and compare

def test_the_report_states_what_packing_costs_per_backend(tmp_path):
    res = results.load(make_varlen_fixture(tmp_path / "varlen"))
    others, table = varlen.cost_table(res)
    assert others == [] and list(table["backend"]) == ["cudnn", "loop"]
    rows = table.set_index("backend")
    assert rows.loc["cudnn", "padded full"] == pytest.approx(10.2) and rows.loc["cudnn", "packed trimmed"] == \
        pytest.approx(12.24)
    assert rows.loc["cudnn", "packed ÷ padded"] == pytest.approx(1.2)
    assert rows.loc["loop", "packed ÷ padded"] == pytest.approx(0.8)
    assert rows.loc["loop", "padded full steps"] == 28
    assert rows.loc["loop", "packed trimmed steps"] == pytest.approx(24.8)
    blocks = report.build_blocks(res, {})
    text = "\n".join(str(b) for b in blocks)
    assert "What packing costs" in text
    assert "**cudnn**: 12.24 ms a step with packed trimmed input against 10.20 ms with padded full input: 1.20× " \
           "(slower packed)" in text
    assert "**loop**: 16.32 ms a step with packed trimmed input against 20.40 ms with padded full input: 0.80×" in text
    assert "skipped: triton does not support PackedSequence input yet" in text
    assert "Lengths of the 10 training images" in text and "min 20, median 24, mean 24.80, max 28" in text
    assert ["24", "4", "40.0 %"] in next(b for b in blocks if b[0] == "table" and b[1][0] == "length (steps)")[2]
    assert varlen.parse_length_counts(VARLEN_LENGTHS) == {20: 2, 24: 4, 28: 4}
    assert "`packing=packed`: **cudnn** is fastest" in text  # the headline takes packing as a sweep axis


def test_compare_matches_rows_on_packing(tmp_path):
    a = results.load(make_varlen_fixture(tmp_path / "a"))
    b = results.load(make_varlen_fixture(tmp_path / "b", slow={"loop": 1.5}))
    rows, _ = compare.compare(a, b, 0.05)
    step = rows[rows["metric"] == "step_ms_median"].set_index(["backend", "packing"])
    assert set(step.index) == {(x, p) for x in ("cudnn", "loop") for p in ("none", "packed")}
    assert step.loc[("loop", "packed"), "ratio"] == pytest.approx(1.5)
    assert step.loc[("cudnn", "none"), "ratio"] == pytest.approx(1.0)


def test_older_results_have_no_packing_section(tmp_path):
    directory = make_varlen_fixture(tmp_path / "old")
    runs = storage.load_runs(directory)
    runs["packing"], runs["task"] = "none", "rows"
    assert not varlen.applies(results.Results(directory, runs, runs.iloc[:0], runs.iloc[:0], {}))


# ---------------------------------------------------------------- end to end (trains)

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_varlen_preset_end_to_end_on_trimmed_images(tmp_path, fake_mnist):
    for images in (fake_mnist.train_images, fake_mnist.test_images):
        images[torch.arange(len(images))[:, None] % 9 + 20 <= torch.arange(28)[None, :]] = 0  # lengths 20..28
    out = tmp_path / "out"
    argv = ["--experiment", "varlen", "--backends", "loop,cudnn,gru", "--train-limit", "300", "--hidden", "8",
            "--proj-size", "4", "--no-isolate", "--device", "cpu", "--warmup-steps", "1", "--out", str(out), "--report"]
    assert run_command.cli(argv) == 0
    runs = storage.load_runs(out).set_index("run_id")
    assert runs.loc["gru-s0-b50-h8-l2-t28-rows-trimmed-p4-packed", "status"] == "skipped"
    padded, packed = (runs.loc[f"loop-s0-b50-h8-l2-t28-rows-trimmed-p4{s}"] for s in ("", "-packed"))
    assert padded["mean_length"] == 28 and packed["mean_length"] < 28
    assert packed["step_gflop"] == pytest.approx(padded["step_gflop"] * packed["mean_length"] / 28, rel=0.02)
    assert packed["length_counts"] == padded["length_counts"] and packed["length_counts"].startswith("20:")
    assert packed["grad_rel_err"] < 1e-4  # the packed model against nn.LSTM in float64 on the same lengths
    assert "What packing costs" in (out / "report.md").read_text()
    assert json.loads((out / "env.json").read_text())["experiment"] == "varlen"


def test_a_bidirectional_axis_reads_true_and_false_in_the_headline(tmp_path):
    from tests.fixtures.results_factory import run_row, write_env, write_run
    write_env(tmp_path, backends=("cudnn",), sweep={"bidirectional": [False, True]})
    for bidirectional, ms in ((False, 10.0), (True, 19.0)):
        row = run_row("cudnn", 0, bidirectional=bidirectional, test_accuracy=0.9)
        row["run_id"] += "-bi" if bidirectional else ""
        write_run(tmp_path, row, step_ms=[ms, ms + 1, ms + 2])
    res = results.load(tmp_path)
    assert res.axes == ["bidirectional"] and res.runs["bidirectional"].tolist() == [False, True]
    text = "\n".join(str(b) for b in report.build_blocks(res, {}))
    assert "`bidirectional=false`: **cudnn** is fastest, 11.00 ms" in text
    assert "`bidirectional=true`: **cudnn** is fastest, 20.00 ms" in text


@pytest.mark.parametrize("family, bidirectional, proj_size", [
    ("lstm", False, 0), ("lstm", True, 0), ("lstm", False, 3), ("lstm", True, 3), ("gru", True, 0)])
def test_the_memory_estimate_counts_the_parameters_the_options_make(family, bidirectional, proj_size):
    from bench import estimate
    options = {"bidirectional": bidirectional} | ({"proj_size": proj_size} if proj_size else {})
    rnn = (torch.nn.LSTM if family == "lstm" else torch.nn.GRU)(7, 5, 3, **options)
    model = RowClassifier(rnn, head_width(5, bidirectional, proj_size), 4)
    assert estimate.parameter_count(family, 7, 5, 3, 4, bidirectional=bidirectional, proj_size=proj_size) == \
        sum(p.numel() for p in model.parameters())


def test_a_backend_that_ran_only_padded_says_why_packed_did_not(tmp_path):
    from tests.fixtures.results_factory import run_row, write_env, write_run
    write_env(tmp_path, backends=("cudnn", "triton"), task="rows-trimmed", sweep={"packing": ["none", "packed"]})
    for packing in ("none", "packed"):
        for backend in ("cudnn", "triton"):
            if backend == "triton" and packing == "packed":
                row = run_row(backend, 0, "skipped", "triton does not support PackedSequence input yet",
                              task="rows-trimmed", packing=packing)
            else:
                row = run_row(backend, 0, task="rows-trimmed", packing=packing, test_accuracy=0.9)
            row["run_id"] += f"-{packing}"
            write_run(tmp_path, row, step_ms=[5.0, 6.0, 7.0] if row["status"] == "ok" else [])
    text = "\n".join(str(b) for b in varlen.blocks(results.load(tmp_path)))
    assert ("**triton**: only padded full input ran, so there is no ratio; packed trimmed: skipped: triton does "
            "not support PackedSequence input yet") in text
    assert "**cudnn**: 6.000 ms a step with packed trimmed input against 6.000 ms" in text
