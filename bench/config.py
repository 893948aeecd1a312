"""One flat config. Defaults are the reference tutorial's; overrides reject unknown keys.

The config is saved beside every result (env.json), so a results directory says how it was made.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

MNIST_PIXELS = 28 * 28


@dataclass(frozen=True)
class Config:
    backends: tuple[str, ...] = ("cudnn", "loop", "triton", "gru")  # run in this order
    seeds: tuple[int, ...] = (0,)          # one run per backend and seed
    epochs: int = 1                        # tutorial: one pass over the 60,000 training images
    batch_size: int = 50                   # tutorial
    hidden_size: int = 64                  # tutorial
    num_layers: int = 2                    # tutorial
    lr: float = 1e-3                       # Adam, tutorial
    seq_len: int = 28                      # time steps per image: 28 rows of 28 pixels (tutorial)
    num_classes: int = 10                  # digits
    device: str = "auto"                   # auto = cuda when available, else cpu
    dtype: str = "float32"                 # float32 | float16 | bfloat16 (half types are CUDA-only)
    train_limit: int | None = None         # train on the first N images only (smoke runs); None = all
    warmup_steps: int = 10                 # steps left out of steady-state throughput (first is timed alone)
    eval_batch_size: int = 1000            # test-set batch; evaluation is timed separately from training
    curve_every: int = 10                  # record the training loss every N steps
    threads: int | None = None             # torch CPU threads; None = torch's default
    isolate: bool = True                   # each run in a fresh process: clean memory figures, crashes become rows
    data_root: str | None = None           # MNIST cache; None = $LSTM_BENCH_DATA or ./data
    sweep: dict = field(default_factory=dict)  # axis -> values, e.g. {"batch_size": [32, 128]}

    @property
    def input_size(self) -> int:
        """Pixels per step: an image is read as seq_len chunks of equal size."""
        return MNIST_PIXELS // self.seq_len

    def validate(self) -> "Config":
        positive = ("epochs", "batch_size", "hidden_size", "num_layers", "seq_len", "num_classes",
                    "eval_batch_size", "curve_every")
        for key in positive:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"config: {key} must be a positive integer, got {value!r}")
        for key in ("train_limit", "threads"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"config: {key} must be a positive integer or unset, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"config: warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if not isinstance(self.isolate, bool):
            raise ValueError(f"config: isolate must be true or false, got {self.isolate!r}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            raise ValueError(f"config: lr must be a positive number, got {self.lr!r}")
        if MNIST_PIXELS % self.seq_len:
            raise ValueError(f"config: seq_len must divide 784 (28x28 pixels), e.g. 14, 28, 56, 112; got {self.seq_len}")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"config: dtype must be one of float32, float16, bfloat16; got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"config: device must be auto, cpu or cuda[:N]; got {self.device!r}")
        if not self.backends:
            raise ValueError("config: backends must name at least one backend")
        if not self.seeds:
            raise ValueError("config: seeds must hold at least one integer")
        for axis, values in self.sweep.items():
            if axis not in SWEEP_AXES:
                raise ValueError(f"config: unknown sweep axis {axis!r}; expected one of: {', '.join(SWEEP_AXES)}")
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"config: sweep.{axis} must be a non-empty list of values")
            for value in values:
                self.replace(**{axis: value, "sweep": {}}).validate()
        return self

    def replace(self, **overrides) -> "Config":
        return from_dict(overrides, base=self)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_size"] = self.input_size
        return data


SWEEP_AXES = ("batch_size", "hidden_size", "seq_len", "num_layers")
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def from_dict(overrides: dict, base: Config | None = None) -> Config:
    """A Config with `overrides` applied; unknown keys are an error, never silently ignored."""
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(f"config: unknown key(s) {', '.join(map(repr, unknown))}; expected some of: {', '.join(_FIELDS)}")
    values = dict(overrides)
    for key in ("backends", "seeds"):
        if key in values and isinstance(values[key], str):
            values[key] = tuple(v.strip() for v in values[key].split(",") if v.strip())
        if key in values:
            values[key] = tuple(values[key])
    if "seeds" in values:
        try:
            values["seeds"] = tuple(int(s) for s in values["seeds"])
        except (TypeError, ValueError):
            raise ValueError(f"config: seeds must be integers, got {overrides['seeds']!r}") from None
    return dataclasses.replace(base or Config(), **values).validate()


def load_file(path: str | Path) -> dict:
    """Keys from a TOML or YAML file (checked when applied with from_dict)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file must end in .toml, .yaml, .yml or .json; got {path.name!r}")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path.name!r} must hold a table of keys, got {type(data).__name__}")
    return data
