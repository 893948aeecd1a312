"""One flat config, and the one table of knobs: each field carries its own metadata.

Defaults are the reference tutorial's; overrides reject unknown keys. The config is saved beside
every result (env.json), so a results directory says how it was made.

Each field is declared with `knob(default, help, ...)`; from that one declaration come the `bench run`
flag (add_arguments), the field's column in runs.csv (row_values, row_columns), whether it is part of
a run's key (key_columns) or a sweep axis (sweep_axes), env.json (to_dict) and the report's settings
table (setting_keys). Adding a knob is one `knob(...)` line here plus the code that uses it
(and a check in `validate` if its values are constrained).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import re
import types
import typing
from dataclasses import dataclass, field

from bench.brief import brief
from bench.config_file import MAX_FILE_BYTES, load_file  # noqa: F401  (config files: bench.config_file)
from bench.constants import IMAGE_PIXELS, IMAGE_SIDE
from impls.registry import PACKINGS, default_plan

INT64 = (-2**63, 2**63 - 1)      # what torch.manual_seed and a runs.csv column hold
TASKS = ("rows", "permuted", "rows-trimmed")   # pixel orders and lengths: bench/data/tasks.py (kept equal there)


def knob(default, help: str, *, flag: str | None = None, type=None, column: bool | str = False,
         key: bool = False, sweep: bool = False, factory=None, repeat: bool = False):
    """A config field with its metadata.

    flag    the `bench run` option ("--batch-size"); None = config files only. A bool field's flag
            stores the opposite of its default ("--no-isolate").
    type    how the flag's text becomes a value; default: the type of `default` (int, float), else str
            (comma lists and the like are parsed by from_dict, so files and flags agree).
    column  True: runs.csv holds this field under its own name; a string: runs.csv holds one value of
            this field per run under that name (backends -> backend, seeds -> seed); False: not a column.
    key     the column is part of a run's identity (KEY_COLUMNS; compare matches rows on these).
    sweep   `--sweep NAME=V1,V2` may vary it (implies column and key).
    repeat  the flag may be given several times, each adding one value (a list field: --plugin A --plugin B).
    """
    if sweep:
        column, key = column or True, True
    metadata = {"help": help, "flag": flag, "type": type, "column": column, "key": key, "sweep": sweep,
                "repeat": repeat}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Config:
    backends: tuple[str, ...] = knob(None, "comma-separated backends, run in this order (default: the registry's "
                                     "default plan, impls.default_plan())", flag="--backends", column="backend",
                                     key=True, factory=default_plan)
    plugins: tuple[str, ...] = knob((), "plugin backends to load: a .py file or an importable module defining BACKENDS "
                                    "(files as absolute paths); installed `lstm_bench.backends` entry points load "
                                    "without it (docs/plugins.md)", flag="--plugin", repeat=True)
    seeds: tuple[int, ...] = knob((0,), "comma-separated integers, e.g. 0,1,2; one run per backend and seed",
                                  flag="--seeds", column="seed", key=True)
    epochs: int = knob(1, "passes over the training images (tutorial: one pass over 60,000)",
                       flag="--epochs", column=True)
    batch_size: int = knob(50, "training batch (tutorial: 50)", flag="--batch-size", sweep=True)
    hidden_size: int = knob(64, "LSTM hidden size (tutorial: 64)", flag="--hidden", sweep=True)
    num_layers: int = knob(2, "stacked LSTM layers (tutorial: 2)", flag="--layers", sweep=True)
    bidirectional: bool = knob(False, "both directions, nn.LSTM's bidirectional=True (tutorial: one); the head "
                               "reads both directions' outputs (2*H wide)", flag="--bidirectional", sweep=True)
    proj_size: int = knob(0, "nn.LSTM's proj_size: h projected to this width, below hidden_size (tutorial: 0, "
                          "none); LSTM only, so gru is a skipped row", flag="--proj-size", sweep=True)
    lr: float = knob(1e-3, "Adam learning rate (tutorial: 1e-3)", flag="--lr", column=True)
    grad_clip: float | None = knob(None, "clip the gradients' total norm to this before each optimizer step "
                                   "(inside the timed step); unset = no clipping, as in the tutorial",
                                   flag="--grad-clip", type=float, column=True)
    seq_len: int = knob(IMAGE_SIDE, f"time steps per image (divides {IMAGE_PIXELS}; tutorial: {IMAGE_SIDE} rows of "
                        f"{IMAGE_SIDE} pixels)",
                        flag="--seq-len", sweep=True)
    num_classes: int = knob(10, "output classes (digits)")
    device: str = knob("auto", "auto | cpu | cuda[:N] (auto = cuda when available, else cpu)", flag="--device")
    dtype: str = knob("float32", "float32 | float16 | bfloat16 (float16 is CUDA-only; bfloat16 needs CUDA "
                      "compute capability 8.0 or a CPU)", flag="--dtype", sweep=True)
    task: str = knob("rows", f"pixel order: rows (reading order, cut into seq_len steps; seq_len {IMAGE_PIXELS} is "
                     f"pixel MNIST) | permuted (the {IMAGE_PIXELS} pixels in one fixed random order from "
                     "permutation_seed) | rows-trimmed (reading order, each image ending at its last step with ink: "
                     "its own length, used as `packing` says)",
                     flag="--task", sweep=True)
    packing: str = knob("none", "how the batch reaches the backend: none (padded, every image seq_len steps, "
                        "lengths ignored) | packed (a PackedSequence of each image's length) | lengths (padded to the "
                        "batch's longest, with lengths=); a backend without it is a skipped row (tutorial: none)",
                        flag="--packing", sweep=True)
    permutation_seed: int = knob(0, "seed of the permuted task's pixel order (the same for train, test and "
                                 "every backend)", flag="--permutation-seed", column=True, key=True)
    tf32: bool = knob(False, "allow TF32 for float32 matmuls in both cuBLAS and cuDNN (CUDA only; cuDNN's own "
                             "default is on, cuBLAS's off: false makes float32 mean the same for every backend)",
                      flag="--tf32", column=True)
    train_limit: int | None = knob(None, "train on the first N images only (smoke runs); unset = all",
                                   flag="--train-limit", type=int, column=True)
    warmup_steps: int = knob(10, "steps left out of steady-state throughput (the first is timed alone)",
                             flag="--warmup-steps")
    eval_batch_size: int = knob(1000, "test-set batch; evaluation is timed separately from training")
    curve_every: int = knob(10, "record the training loss every N steps")
    threads: int | None = knob(None, "torch CPU threads; unset = torch's default", flag="--threads", type=int)
    isolate: bool = knob(True, "each run in a fresh process: clean memory figures, a crash becomes a row",
                         flag="--no-isolate")
    timeout: float = knob(1800, "seconds a run may take before its worker is ended and the run recorded as failed "
                          "(0: no limit)", flag="--timeout", type=float)
    data_root: str | None = knob(None, "MNIST cache; unset = $LSTM_BENCH_DATA or ./data", flag="--data-root")
    sweep: dict = knob(None, "axis -> values, e.g. {batch_size = [32, 128]} (flag: --sweep AXIS=V1,V2)", factory=dict)

    @property
    def input_size(self) -> int:
        """Pixels per step: an image is read as seq_len chunks of equal size."""
        return IMAGE_PIXELS // self.seq_len

    def validate(self) -> Config:
        positive = ("epochs", "batch_size", "hidden_size", "num_layers", "seq_len", "num_classes",
                    "eval_batch_size", "curve_every")
        for key in positive:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"config: {key} must be a positive integer, got {brief(value)}")
        for key in ("train_limit", "threads"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"config: {key} must be a positive integer or unset, got {brief(value)}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"config: warmup_steps must be a non-negative integer, got {brief(self.warmup_steps)}")
        for key in ("tf32", "bidirectional"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"config: {key} must be true or false, got {brief(getattr(self, key))}")
        if self.timeout < 0:
            raise ValueError("config: timeout must be 0 (no limit) or a positive number of seconds, "
                             f"got {brief(self.timeout)}")
        if not isinstance(self.isolate, bool):
            raise ValueError(f"config: isolate must be true or false, got {brief(self.isolate)}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            raise ValueError(f"config: lr must be a positive number, got {brief(self.lr)}")
        if IMAGE_PIXELS % self.seq_len:
            raise ValueError(f"config: seq_len must divide {IMAGE_PIXELS} ({IMAGE_SIDE}x{IMAGE_SIDE} pixels), e.g. 14, "
                             f"28, 56, 112; got {self.seq_len}")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"config: dtype must be one of float32, float16, bfloat16; got {brief(self.dtype)}")
        if self.task not in TASKS:
            raise ValueError(f"config: task must be one of {', '.join(TASKS)}; got {brief(self.task)}")
        if self.packing not in PACKINGS:
            raise ValueError(f"config: packing must be one of {', '.join(PACKINGS)}; got {brief(self.packing)}")
        proj = self.proj_size  # nn.LSTM refuses proj_size >= hidden_size: said here, before any run
        if isinstance(proj, bool) or not isinstance(proj, int) or not 0 <= proj < self.hidden_size:
            raise ValueError(f"config: proj_size must be 0 (no projection) or a positive integer below hidden_size "
                             f"({self.hidden_size}), got {brief(proj)}")
        if isinstance(self.permutation_seed, bool) or not isinstance(self.permutation_seed, int) \
                or not 0 <= self.permutation_seed < 2**32:
            raise ValueError("config: permutation_seed must be an integer in [0, 2**32), "
                             f"got {brief(self.permutation_seed)}")
        clip = self.grad_clip
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
            raise ValueError(f"config: grad_clip must be a positive number or unset, got {brief(self.grad_clip)}")
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,4})?", self.device):  # torch.device would raise a traceback
            raise ValueError(f"config: device must be auto, cpu or cuda[:N] (N a GPU index); got {brief(self.device)}")
        if not self.backends:
            raise ValueError("config: backends must name at least one backend")
        if not self.seeds:
            raise ValueError("config: seeds must hold at least one integer")
        if outside := [s for s in self.seeds if not INT64[0] <= s <= INT64[1]]:  # torch and runs.csv hold int64
            raise ValueError(f"config: seeds must be 64-bit integers (from -2**63 to 2**63-1), got {brief(outside[0])}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"config: seeds must differ: {brief(_twice(self.seeds))} is listed twice "
                             "(the same seed twice is the same run, not a second sample)")
        self._check_sweep()
        return self

    def _check_sweep(self) -> None:
        """Every axis is known and each of its values valid here; then every point, for axes that only clash
        together (hidden_size and proj_size)."""
        for axis, values in self.sweep.items():
            if axis not in sweep_axes():
                raise ValueError(f"config: unknown sweep axis {brief(axis)}; "
                                 f"expected one of: {', '.join(sweep_axes())}")
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"config: sweep.{axis} must be a non-empty list of values, got {brief(values)}")
            for value in values:
                self.replace(**{axis: value, "sweep": {}}).validate()
            if len(set(values)) != len(values):
                raise ValueError(f"config: sweep.{axis} lists {brief(_twice(values))} twice; each point runs once")
        for point in sweep_points(self.sweep) if len(self.sweep) > 1 else ():
            try:
                self.replace(**point, sweep={})
            except ValueError as error:
                where = ", ".join(f"{axis}={value}" for axis, value in point.items())
                raise ValueError(f"config: sweep point {where}: {str(error).removeprefix('config: ')}") from None

    def replace(self, **overrides) -> Config:
        return from_dict(overrides, base=self)

    def to_dict(self) -> dict:
        """Every field and derived value (env.json, the report's settings)."""
        data = dataclasses.asdict(self)
        data |= {name: getattr(self, name) for name in DERIVED}
        return data


def _twice(values) -> object:
    return next(v for i, v in enumerate(values) if v in list(values)[:i])


# Values computed from the fields, saved beside them in env.json and runs.csv: name -> the field it follows
# in the report's settings table.
DERIVED = {"input_size": "seq_len"}

# Everything below reads the table at call time (not at import), so a field added to Config (or to a
# subclass put in its place, as the tests do) reaches the parser, the rows and the report at once.


def sweep_points(sweep: dict) -> list[dict]:
    """Every combination of the sweep's values, in plan order ([{}] without a sweep): the runner plans
    these, and the results model compares the plan saved in env.json with the rows on disk."""
    axes = list(sweep)
    return [dict(zip(axes, values)) for values in itertools.product(*(sweep[a] for a in axes))]


def fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Config)}


def sweep_axes() -> tuple[str, ...]:
    return tuple(name for name, f in fields().items() if f.metadata["sweep"])


def axis_type(axis: str):
    """How a `--sweep AXIS=...` value is read: the type of the field's default (int, float), else str."""
    default = fields()[axis].default
    if isinstance(default, bool):
        return boolean
    return type(default) if type(default) in (int, float) else str


def boolean(text: str) -> bool:
    """A `--sweep bidirectional=false,true` value: true/false, yes/no or 1/0, any case."""
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.strip().lower() not in words:
        raise ValueError(f"expected true or false, got {text!r}")
    return words[text.strip().lower()]


def cli_keys() -> tuple[str, ...]:
    """Fields with a `bench run` flag (dest = field name)."""
    return tuple(name for name, f in fields().items() if f.metadata["flag"])


def setting_keys() -> tuple[str, ...]:
    """The keys of to_dict, in the order the report's settings table lists them."""
    keys = []
    for name in fields():
        keys += [name, *(derived for derived, after in DERIVED.items() if after == name)]
    return tuple(keys)


def column_name(name: str) -> str:
    """The runs.csv column of a field (backends -> backend) or of a derived value."""
    column = fields()[name].metadata["column"] if name in fields() else True
    return column if isinstance(column, str) else name


def row_columns() -> tuple[str, ...]:
    """runs.csv's config columns: fields in declaration order, then the derived values."""
    return tuple(column_name(n) for n, f in fields().items() if f.metadata["column"]) + tuple(DERIVED)


def key_columns() -> tuple[str, ...]:
    """The config columns that identify a run (with run_id, schema.KEY_COLUMNS)."""
    return tuple(column_name(n) for n, f in fields().items() if f.metadata["key"])


def row_values(config: Config, **per_run) -> dict:
    """runs.csv's config columns for one run; per_run gives the per-run columns (backend=, seed=)."""
    row = {}
    for name, f in fields().items():
        column = f.metadata["column"]
        if isinstance(column, str):
            row[column] = per_run[column]
        elif column:
            row[name] = getattr(config, name)
    return row | {name: getattr(config, name) for name in DERIVED}


def add_arguments(parser: argparse.ArgumentParser, help_suffix: dict[str, str] | None = None) -> None:
    """One option per field that has a flag; dest is the field name, default None (= not given)."""
    help_suffix = help_suffix or {}
    for name, f in fields().items():
        flag = f.metadata["flag"]
        if not flag:
            continue
        text = f.metadata["help"] + help_suffix.get(name, "")
        if isinstance(f.default, bool):
            text = ("turn off: " if f.default else "turn on: ") + text
            parser.add_argument(flag, dest=name, action="store_const", const=not f.default, help=text)
            continue
        parse = f.metadata["type"] or (type(f.default) if type(f.default) in (int, float) else str)
        action = "append" if f.metadata["repeat"] else "store"
        parser.add_argument(flag, dest=name, type=parse, help=text, action=action)


def _types() -> dict[str, object]:
    """Each field's declared type (the annotation in the table), e.g. int, float | None, tuple[str, ...]."""
    return typing.get_type_hints(Config)


def _type_words(hint) -> str:
    """What a value of this type is called in an error line."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(_type_words(a) for a in inner) + " or unset"
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_words(typing.get_args(hint)[0]).removeprefix('an ').removeprefix('a ')}s"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", dict: "a table of "
            "axis -> list of values, e.g. {batch_size = [32, 128]}"}.get(hint, getattr(hint, "__name__", str(hint)))


def _has_type(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_has_type(value, a) for a in typing.get_args(hint))
    if origin is tuple:
        return isinstance(value, tuple) and all(_has_type(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:  # an integer is a fine float; inf and nan are not values anyone means
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _as_list(key: str, value):
    """A comma-separated string or a list, as a tuple (files and flags agree); anything else is kept, to be refused."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        if key == "seeds":
            try:
                return tuple(int(v) for v in items)
            except ValueError:
                raise ValueError(f"config: seeds must be integers, got {brief(value)}") from None
        return tuple(items)
    return tuple(value) if isinstance(value, list | tuple) else value


def from_dict(overrides: dict, base: Config | None = None) -> Config:
    """A Config with `overrides` applied; unknown keys are an error, never silently ignored, and every
    value must have its field's declared type (one line naming the key, what it expects and what it got)."""
    known = fields()
    if not_names := [key for key in overrides if not isinstance(key, str)]:  # YAML allows 1: or [a]: as keys
        raise ValueError(f"config: every key must be a name such as hidden_size; got {brief(not_names[0])} "
                         f"({type(not_names[0]).__name__})")
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        shown = (", ".join(brief(key, 40) for key in unknown[:5])
                 + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        raise ValueError(f"config: unknown key(s) {shown}; expected some of: {', '.join(known)}")
    hints = _types()
    values = {key: _as_list(key, value) if typing.get_origin(hints[key]) is tuple else value
              for key, value in overrides.items()}
    for key, value in values.items():
        if not _has_type(value, hints[key]):
            raise ValueError(f"config: {key} must be {_type_words(hints[key])}, got {brief(overrides[key])}")
    return dataclasses.replace(base or Config(), **values).validate()
