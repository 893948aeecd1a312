"""Backends from outside the repository (plugins), registered into the one registry table.

Two ways in, both giving the facts of a registry row (an impls.Backend):
  * an installed distribution's entry point in the group `lstm_bench.backends`: the entry point's name is
    the backend's name and its object an impls.Backend. In the plugin's pyproject.toml:
        [project.entry-points."lstm_bench.backends"]
        my-lstm = "my_package:BACKEND"
  * a file (`--plugin path/to/mine.py`) or an importable module (`--plugin my_package.backends`) defining
        BACKENDS = {"my-lstm": impls.Backend(MyLSTM, "lstm", "torch", "what it is")}
    where the factory is the nn.Module class itself or a "module:attribute" string.

load(specs) imports the given files and modules and every installed entry point, and registers their
backends in impls.registry.REGISTRY, idempotently: loading the same plugin twice is a no-op, so the
driver, each worker process (impls.plugins.ensure, called with the run's config) and a test may all call
it. From there every part of the harness that reads the table sees a plugin as it sees a built-in one.
A plugin may not take a built-in name, nor one another plugin took. Bad --plugin input is a PluginError
(one line); an installed entry point that fails to import is only recorded (BROKEN), so that one broken
package does not stop every command: asking for its backend by name says why it is missing.

provenance() says where each plugin came from and which version it was: the distribution's version, or
the SHA-256 of the file. Importing this module imports no torch (a plugin's own module may).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from impls.registry import BUILTIN, FAMILIES, NEEDS, REGISTRY, SURFACE, Backend

GROUP = "lstm_bench.backends"
ENV_VAR = "LSTM_BENCH_PLUGINS"  # os.pathsep-separated specs, for the micro-benchmarks (tests/benchmarks)
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")  # a backend name goes into run ids and file names
COLOR = re.compile(r"^(#[0-9a-fA-F]{6})?$")


class PluginError(ValueError):
    """A plugin that cannot be loaded or registered; the message is one line for the user."""


@dataclass(frozen=True)
class Plugin:
    name: str     # the backend's name
    kind: str     # "entry point" | "file" | "module"
    source: str   # the entry point ("name = module:object"), the file's absolute path, or the module's name
    version: str  # "distribution 1.2.0", or "sha256:<hex>" of the file

    @property
    def origin(self) -> str:
        return f"{self.kind} {self.source}"


LOADED: dict[str, Plugin] = {}   # backend name -> where it came from
BROKEN: dict[str, str] = {}      # entry point name -> why it could not be loaded
_specs_done: set[str] = set()
_entry_points_done = False


# ---------------------------------------------------------------- loading

def load(specs=(), *, entry_points: bool = True) -> list[Plugin]:
    """Loads each spec (a .py path or a module name; PluginError when one cannot be loaded) and, with
    entry_points, every installed entry point of GROUP. Returns the plugins registered so far."""
    for spec in specs:
        load_spec(spec)
    if entry_points:
        load_entry_points()
    return list(LOADED.values())


def is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def normalise(spec: str) -> str:
    """A file spec as its absolute path (a resumed run or a worker may start elsewhere); a module name as given."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plugin must be a .py file or an importable module name, got {spec!r}")
    spec = spec.strip()
    return str(Path(spec).expanduser().resolve()) if is_file(spec) else spec


def load_spec(spec: str) -> list[Plugin]:
    """Imports one file or module and registers every backend of its BACKENDS dict."""
    spec = normalise(spec)
    if spec in _specs_done:
        return [p for p in LOADED.values() if p.source == spec]
    module, kind, version = _import_file(spec) if is_file(spec) else _import_module(spec)
    backends = getattr(module, "BACKENDS", None)
    if not isinstance(backends, dict) or not backends:
        found = "none" if backends is None else type(backends).__name__
        raise PluginError(f"plugin {spec}: expected BACKENDS, a non-empty dict of backend name -> impls.Backend; "
                          f"found {found}")
    plugins = [Plugin(name, kind, spec, version) for name in backends]
    for plugin in plugins:  # every row checked before any is registered: a bad plugin adds nothing
        check(plugin, backends[plugin.name])
    for plugin in plugins:
        register(plugin, backends[plugin.name])
    _specs_done.add(spec)
    return plugins


def _import_file(path: str):
    file = Path(path)
    if not file.is_file():
        raise PluginError(f"plugin {path}: no such file; expected a .py file defining BACKENDS, or a module name")
    digest = sha256(file)
    name = f"lstm_bench_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', file.stem)}_{digest[:12]}"
    if name in sys.modules:
        return sys.modules[name], "file", f"sha256:{digest}"
    if str(file.parent) not in sys.path:  # so the plugin can import the helpers beside it
        sys.path.append(str(file.parent))
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin {path}: cannot be imported as a Python file; expected a .py file defining BACKENDS")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before it runs: dataclasses and pickling look a module up by name
    try:
        module_spec.loader.exec_module(module)
    except BaseException as error:
        del sys.modules[name]
        raise PluginError(f"plugin {path}: import failed: {_one_line(error)}") from None
    return module, "file", f"sha256:{digest}"


def _import_module(name: str):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):  # the plugin itself, not something it imports
            raise PluginError(f"plugin {name}: no module named {error.name!r}; expected a .py file defining "
                              "BACKENDS, or an importable module") from None
        raise PluginError(f"plugin {name}: import failed: {_one_line(error)}") from None
    except BaseException as error:
        raise PluginError(f"plugin {name}: import failed: {_one_line(error)}") from None
    return module, "module", module_version(module)


def load_entry_points() -> None:
    """Every installed entry point of GROUP, once per process. One that fails is recorded in BROKEN;
    one that takes a built-in name is a PluginError (what `cudnn` means must never depend on what is installed)."""
    global _entry_points_done
    if _entry_points_done:
        return
    for entry in importlib.metadata.entry_points(group=GROUP):
        if entry.name not in LOADED and entry.name not in BROKEN:
            _load_entry_point(entry)
    _entry_points_done = True


def load_entry_point(name: str) -> Plugin:
    """The installed entry point called `name` (a worker needs only its own backend); PluginError when
    there is none or it cannot be loaded."""
    if name in LOADED:
        return LOADED[name]
    for entry in importlib.metadata.entry_points(group=GROUP, name=name):
        _load_entry_point(entry)
        if name in LOADED:
            return LOADED[name]
    raise PluginError(f"backend {name!r}: " + (BROKEN.get(name) or f"no such backend and no installed "
                                                f"'{GROUP}' entry point of that name"))


def _load_entry_point(entry) -> None:
    dist = getattr(entry, "dist", None)
    version = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    plugin = Plugin(entry.name, "entry point", f"{entry.name} = {entry.value}", version)
    if entry.name in BUILTIN:
        raise PluginError(shadowing(plugin))
    try:
        backend = entry.load()
        check(plugin, backend)
        register(plugin, backend)
    except PluginError as error:
        BROKEN[entry.name] = str(error)
    except BaseException as error:
        BROKEN[entry.name] = f"plugin {plugin.origin} ({version}): import failed: {_one_line(error)}"


def ensure(name: str, specs=()) -> None:
    """In a worker: make backend `name` available, loading no more than it needs: nothing for a built-in; else
    the run's plugins (config.plugins) one by one until one registers it, then the installed entry point of
    that name. So a plugin that fails here fails only its own cells. PluginError says why when a plugin
    failed; a name no plugin offers is left to impls.build to refuse."""
    failures = []
    for spec in specs:
        if name in REGISTRY:
            return
        try:
            load_spec(spec)
        except PluginError as error:
            failures.append(str(error))
    if name in REGISTRY:
        return
    try:
        load_entry_point(name)
    except PluginError as error:
        if failures or name in BROKEN:
            raise PluginError(f"{'; '.join(failures) or error} (in the worker process)") from None


# ---------------------------------------------------------------- registering

def shadowing(plugin: Plugin) -> str:
    return (f"plugin {plugin.origin}: backend name {plugin.name!r} is built in; a plugin must choose another "
            f"name (built in: {', '.join(sorted(BUILTIN))})")


def check(plugin: Plugin, backend) -> None:
    """That `backend` is a well-formed registry row under a free, well-formed name (PluginError if not)."""
    where = f"plugin {plugin.origin}: backend {plugin.name!r}"
    if plugin.name in BUILTIN:
        raise PluginError(shadowing(plugin))
    if not isinstance(plugin.name, str) or not NAME.match(plugin.name):
        raise PluginError(f"plugin {plugin.origin}: backend name {plugin.name!r} must be 1-40 characters of "
                          "a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    if not isinstance(backend, Backend):
        raise PluginError(f"{where}: expected an impls.Backend(factory, family, needs, summary, ...), "
                          f"got {type(backend).__name__}")
    factory = backend.factory
    if not (isinstance(factory, type) or (isinstance(factory, str) and re.fullmatch(r"[\w.]+:\w+", factory))):
        raise PluginError(f"{where}: factory must be the nn.Module class or a 'module:attribute' string, "
                          f"got {factory!r}")
    for wrong, problem in (
            (backend.family not in FAMILIES, f"family must be one of {', '.join(FAMILIES)}, got {backend.family!r}"),
            (backend.needs not in NEEDS, f"needs must be one of {', '.join(NEEDS)}, got {backend.needs!r}"),
            (not set(backend.supports) <= SURFACE,
             f"supports must be a subset of {', '.join(sorted(SURFACE))}, got {sorted(backend.supports)}"),
            (not isinstance(backend.color, str) or not COLOR.match(backend.color),
             f"color must be '' or '#rrggbb', got {backend.color!r}")):
        if wrong:
            raise PluginError(f"{where}: {problem}")
    holder = LOADED.get(plugin.name)
    if holder is not None and holder.source != plugin.source:
        raise PluginError(f"{where}: the name is already taken by {holder.origin}")


def register(plugin: Plugin, backend: Backend) -> None:
    REGISTRY[plugin.name] = backend
    LOADED[plugin.name] = plugin


@contextlib.contextmanager
def isolated():
    """For tests: no plugin loaded inside, and on leaving the registry and this module exactly as they were."""
    global _entry_points_done
    saved_registry, saved_loaded, saved_broken = dict(REGISTRY), dict(LOADED), dict(BROKEN)
    saved_specs, saved_done = set(_specs_done), _entry_points_done
    try:
        for name in LOADED:
            REGISTRY.pop(name, None)
        for table in (LOADED, BROKEN, _specs_done):
            table.clear()
        _entry_points_done = False
        yield
    finally:
        for restored in (REGISTRY, LOADED, BROKEN, _specs_done):
            restored.clear()
        REGISTRY.update(saved_registry)
        LOADED.update(saved_loaded)
        BROKEN.update(saved_broken)
        _specs_done.update(saved_specs)
        _entry_points_done = saved_done


# ---------------------------------------------------------------- provenance

def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def module_version(module) -> str:
    """The installed distribution's "name version" that holds `module`, else the SHA-256 of its file."""
    top = module.__name__.partition(".")[0]
    for dist_name in importlib.metadata.packages_distributions().get(top, []):
        try:
            return f"{dist_name} {importlib.metadata.version(dist_name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    file = getattr(module, "__file__", None)
    return f"sha256:{sha256(Path(file))}" if file else "unknown"


def origin(name: str) -> str:
    """Where backend `name` comes from, for `bench list`: "built-in", or the plugin and its version."""
    plugin = LOADED.get(name)
    return f"plugin: {plugin.origin} ({plugin.version})" if plugin else "built-in"


def provenance(names=None) -> dict[str, dict]:
    """env.json's "plugins": for each loaded plugin (of `names`, when given) where it came from, its version,
    and the registry facts the torch-free analysis side needs (family, summary, colour)."""
    chosen = [n for n in LOADED if names is None or n in names]
    return {name: {"kind": LOADED[name].kind, "source": LOADED[name].source, "version": LOADED[name].version,
                   "family": REGISTRY[name].family, "summary": REGISTRY[name].summary, "color": REGISTRY[name].color}
            for name in chosen}


def loaded_line() -> str:
    """Every loaded plugin, its origin and version, on one line ("" when none): a table's provenance column."""
    return "; ".join(f"{name}: {p.origin} ({p.version})" for name, p in LOADED.items())


def unknown(name: str) -> str:
    """The one line for a backend name nobody registered: a broken plugin's reason, or the names there are."""
    if name in BROKEN:
        return f"backend {name!r} is not available: {BROKEN[name]}"
    return f"unknown backend {name!r}; expected one of: {', '.join(REGISTRY)}"


def warnings() -> list[str]:
    """One line per installed entry point that could not be loaded (the commands print them on stderr)."""
    return [f"warning: {reason}; backend {name!r} is not available" for name, reason in BROKEN.items()]


def from_environment() -> list[str]:
    """The specs in $LSTM_BENCH_PLUGINS (os.pathsep-separated)."""
    return [s for s in os.environ.get(ENV_VAR, "").split(os.pathsep) if s.strip()]


def _one_line(error: BaseException) -> str:
    """'TypeName: first line', as bench.errors.one_line says it (impls never depends on the harness)."""
    text = f"{type(error).__name__}: {error}".strip()
    return text.splitlines()[0][:500] if text else type(error).__name__
