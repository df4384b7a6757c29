"""Lambda packaging: layers built with pip for the Lambda platform, and function folders.

The CDK app deploys what :func:`build` writes; ``learnrec benchmark package`` measures it.
Docker is not needed (nor available on every machine that deploys), so layers are built
the way ``pip`` can build them for another platform: binary wheels only, for CPython 3.12
on x86_64 glibc 2.34 (the python3.12 runtime), installed with ``--target``.

A layer's ``requirements.txt`` under ``layers/<name>/`` is its complete, pinned
dependency closure and is installed with ``--no-deps``: resolution happened once, when
the file was written against ``requirements/constraints.txt``, and nothing the file does
not list can creep in. That is how boto3/botocore stay out: the Lambda runtime provides
them, and a second copy would only cost space.

Shared libraries that a wheel ships with their ELF symbol tables are stripped of them
(``strip --strip-unneeded``, when GNU binutils are at hand): the dynamic symbols a loader
resolves stay, only the link-time tables go (~11 MB, most of it SQLAlchemy's compiled
extensions and cryptography's). Libraries that auditwheel grafted or patched (in a
``*.libs`` folder, or with an RPATH/RUNPATH) are left as they are: ``strip`` has been
known to damage files that patchelf rewrote.

The modules a handler imports at cold start are compiled for 3.12 when a CPython 3.12
is at hand (``unchecked-hash`` pycs, valid whatever the file times): Lambda's file system
is read-only, so without them every cold start compiles them again. Only those: pycs
for every file would add ~30 MB, for modules no cold start loads.

A function may use at most five layers and its code plus layers must stay under 250 MB
unzipped; :func:`build` checks that and raises :class:`PackageTooLarge` otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LAYERS_DIR = REPO / "layers"
DEFAULT_OUT = Path("build/lambda")

PYTHON_VERSION = "3.12"
# pip does not widen a manylinux_2_X tag to older glibc versions, so every tag the
# runtime accepts (glibc 2.17 .. 2.34) is listed; manylinux2014 is the legacy 2_17 name.
PLATFORMS: tuple[str, ...] = (
    "manylinux2014_x86_64",
    *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 35)),
)
LAMBDA_UNZIPPED_LIMIT = 250 * 2**20  # bytes: function code plus all of its layers
MAX_LAYERS = 5
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
# Declared dependencies left out on purpose, with the reason (the layer specs say so too).
OMITTED: dict[str, str] = {
    "scipy": "only xgboost's Python package imports it; serving calls libxgboost directly",
    "opensearch-protobufs": "opensearch-py's gRPC transport, which learnrec does not use",
    "grpcio": "needed only by opensearch-protobufs",
    "protobuf": "onnxruntime's model tools (trimmed); its runtime links protobuf in C++",
    "flatbuffers": "onnxruntime's model tools (trimmed); its runtime never imports it",
    "packaging": "onnxruntime's model tools (trimmed); its runtime never imports it",
}
STAMP_FILE = ".learnrec-layer.json"
# Bump when trimming changes, so that layers built with older rules are rebuilt.
TRIM_RULES_VERSION = 4

# Never imported at run time: test suites, bytecode caches (Lambda's file system is
# read-only, so they could not even be written), typing stubs, C headers and sources.
_TRIM_DIRS = frozenset({"__pycache__", "tests"})
_TRIM_SUFFIXES = (".pyc", ".pyi", ".h", ".hpp", ".c", ".cpp", ".pxd", ".pyx", ".a")
# Package folders of developer tooling that the runtime packages never import: numpy's
# C headers and f2py, onnxruntime's model conversion, quantization and transformer
# optimisation tools and ONNX backend (which imports onnx, not installed), XGBoost's
# integrations (Dask, Spark, plotting, testing).
_TRIM_PATHS = (
    "numpy/_core/include",
    "numpy/f2py",
    "numpy/_pyinstaller",
    "onnxruntime/tools",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/datasets",
    "onnxruntime/backend",
    "xgboost/dask",
    "xgboost/spark",
    "xgboost/testing",
    "xgboost/include",
)
# onnxruntime's C/C++ API library (35 MB): its Python module is self-contained (it does
# not link or load this file) and the CPU provider needs nothing else from it.
_TRIM_GLOBS = ("onnxruntime/capi/libonnxruntime.so.*",)
_FUNCTION_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".*")


@dataclass(frozen=True)
class LayerSpec:
    """A Lambda layer: its name and the pinned requirements installed into it."""

    name: str
    requirements: tuple[str, ...]

    @property
    def digest(self) -> str:
        """What a built layer depends on; a different digest means rebuild."""
        text = json.dumps(
            {
                "requirements": sorted(self.requirements),
                "python": PYTHON_VERSION,
                "platforms": PLATFORMS,
                "trim": TRIM_RULES_VERSION,
                # Built where binutils were missing, a layer keeps its symbol tables:
                # rebuild it where they are found.
                "strip": binutils() is not None,
            }
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function: its handler folder, entry point, and the layers it runs with."""

    name: str
    source: str
    handler: str
    layers: tuple[str, ...]


def read_requirements(path: Path) -> tuple[str, ...]:
    """Requirement lines of a requirements file, comments and blanks dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line)


def _load_layers(root: Path) -> dict[str, LayerSpec]:
    # Absent outside a checkout (e.g. in a deployed function, which also ships learnrec/);
    # build() then says so instead of this module failing to import.
    if not root.is_dir():
        return {}
    return {
        folder.name: LayerSpec(folder.name, read_requirements(folder / "requirements.txt"))
        for folder in sorted(root.iterdir())
        if (folder / "requirements.txt").is_file()
    }


LAYERS: dict[str, LayerSpec] = _load_layers(LAYERS_DIR)
FUNCTIONS: dict[str, FunctionSpec] = {
    # Four layers: a fifth stays free for a new dependency.
    "api": FunctionSpec(
        "api", "functions/api", "handler.handler", ("base", "db", "numpy", "serving")
    ),
    "ingest": FunctionSpec("ingest", "functions/ingest", "handler.handler", ("base", "db")),
    # The scheduled erasure and retention sweeps (learnrec.privacy.maintenance).
    "maintenance": FunctionSpec(
        "maintenance", "functions/maintenance", "handler.handler", ("base", "db")
    ),
    # The deploy-time schema migration (learnrec.storage.migrate), run by the stack.
    "migrate": FunctionSpec(
        "migrate", "functions/migrate", "handler.handler", ("base", "db", "migrations")
    ),
    # learnrec.pipeline's drift check computes with numpy; promote moves the OpenSearch
    # alias with the client in "search" (not "web": no HTTP framework, no cryptography).
    "pipeline": FunctionSpec(
        "pipeline", "functions/pipeline", "handler.handler", ("base", "numpy", "search")
    ),
    # The stack's OpenSearch security custom resource: the client in "search".
    "search_security": FunctionSpec(
        "search_security", "functions/search_security", "handler.handler", ("base", "search")
    ),
}


class PackageError(RuntimeError):
    """A layer or function could not be built."""


class PackageTooLarge(PackageError):  # noqa: N818 (the name the CDK app imports)
    """A function's code plus layers exceed Lambda's unzipped limit (report attached)."""

    def __init__(self, report: PackageReport) -> None:
        over = ", ".join(
            f"{f.name} {f.unzipped_bytes / 2**20:.1f} MB" for f in report.functions if not f.fits
        )
        super().__init__(
            f"over Lambda's {LAMBDA_UNZIPPED_LIMIT // 2**20} MB unzipped limit: {over}"
        )
        self.report = report


@dataclass(frozen=True)
class LayerReport:
    name: str
    path: str
    unzipped_bytes: int
    files: int
    reused: bool
    trimmed_bytes: int
    largest: dict[str, int]
    compiled: bool = False


@dataclass(frozen=True)
class FunctionReport:
    name: str
    path: str
    handler: str
    layers: tuple[str, ...]
    code_bytes: int
    unzipped_bytes: int  # code plus layers
    fits: bool


@dataclass
class PackageReport:
    out: str
    limit_bytes: int
    layers: list[LayerReport] = field(default_factory=list)
    functions: list[FunctionReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # functions without a handler yet
    runtime_provided: tuple[str, ...] = RUNTIME_PROVIDED

    @property
    def fits(self) -> bool:
        return all(f.fits for f in self.functions)

    def function(self, name: str) -> FunctionReport:
        for report in self.functions:
            if report.name == name:
                return report
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"fits": self.fits}


def layer_dir(name: str, out: Path = DEFAULT_OUT) -> Path:
    """The layer's content root (``python/`` inside it is what Lambda mounts on /opt)."""
    return out / "layers" / name


def function_dir(name: str, out: Path = DEFAULT_OUT) -> Path:
    return out / "functions" / name


def build(
    out: Path = DEFAULT_OUT,
    *,
    only: Iterable[str] | None = None,
    repo: Path = REPO,
    layers: dict[str, LayerSpec] | None = None,
    functions: dict[str, FunctionSpec] | None = None,
    python: str | None = None,
) -> PackageReport:
    """Build the layers and function folders of ``only`` (default: every function).

    Functions whose handler file does not exist yet are listed in ``missing`` and
    skipped, unless named in ``only``. A layer whose stamp shows the same requirements,
    platform and trimming rules is reused as it is. ``python``: the CPython 3.12 that
    compiles the pycs (default: found by :func:`find_python`; none found, no pycs).
    Raises :class:`PackageTooLarge` after building if a function would not deploy.
    """
    layers = LAYERS if layers is None else layers
    functions = FUNCTIONS if functions is None else functions
    wanted = _select(functions, only, repo)
    report = PackageReport(out=str(out), limit_bytes=LAMBDA_UNZIPPED_LIMIT)
    report.missing = sorted(n for n in functions if n not in wanted)
    needed = sorted({layer for spec in wanted.values() for layer in spec.layers})
    unknown = [name for name in needed if name not in layers]
    if unknown:
        where = repo / "layers"
        raise PackageError(
            f"no layer spec for {unknown} (expected {where}/<name>/requirements.txt)"
        )
    for name in needed:
        provided = [
            r for r in layers[name].requirements if _requirement_name(r) in RUNTIME_PROVIDED
        ]
        if provided:
            raise PackageError(f"layer {name}: {provided} come with the Lambda runtime")
    compiler = find_python(python)
    layer_reports = {name: build_layer(layers[name], out) for name in needed}
    for spec in wanted.values():
        build_function(spec, out, repo)
        if compiler:
            precompile_cold_path(spec, compiler, out)
    for name, layer in layer_reports.items():  # pycs were added: measure again
        python_dir = layer_dir(name, out) / "python"
        layer_reports[name] = replace(
            layer, unzipped_bytes=tree_bytes(python_dir), compiled=bool(compiler)
        )
    report.layers = list(layer_reports.values())
    for spec in wanted.values():
        target = function_dir(spec.name, out)
        code = tree_bytes(target)
        total = code + sum(layer_reports[name].unzipped_bytes for name in spec.layers)
        report.functions.append(
            FunctionReport(
                name=spec.name,
                path=str(target),
                handler=spec.handler,
                layers=spec.layers,
                code_bytes=code,
                unzipped_bytes=total,
                fits=total <= LAMBDA_UNZIPPED_LIMIT,
            )
        )
    if not report.fits:
        raise PackageTooLarge(report)
    return report


def _select(
    functions: dict[str, FunctionSpec], only: Iterable[str] | None, repo: Path
) -> dict[str, FunctionSpec]:
    if only is None:
        return {n: s for n, s in functions.items() if handler_file(s, repo).is_file()}
    names = list(dict.fromkeys(only))
    unknown = [n for n in names if n not in functions]
    if unknown:
        raise ValueError(f"unknown function(s) {unknown}; known: {sorted(functions)}")
    absent = [str(handler_file(functions[n], repo)) for n in names]
    absent = [path for path in absent if not Path(path).is_file()]
    if absent:
        raise FileNotFoundError(f"no handler {absent}")
    for name in names:
        if len(functions[name].layers) > MAX_LAYERS:
            raise ValueError(f"function {name}: Lambda allows at most {MAX_LAYERS} layers")
    return {n: functions[n] for n in names}


def handler_file(spec: FunctionSpec, repo: Path = REPO) -> Path:
    """The handler's module file (``handler.handler`` -> ``<source>/handler.py``)."""
    module = spec.handler.rsplit(".", 1)[0]
    return repo / spec.source / (module.replace(".", "/") + ".py")


def build_layer(spec: LayerSpec, out: Path = DEFAULT_OUT) -> LayerReport:
    """Install ``spec`` for the Lambda platform into ``layer_dir/python`` and trim it.

    Built in a sibling folder and swapped in at the end, so an interrupted build never
    leaves a half layer that a later stamp check would take for complete.
    """
    target = layer_dir(spec.name, out)
    stamp = target / STAMP_FILE
    digest = spec.digest
    if stamp.is_file() and (target / "python").is_dir():
        recorded = json.loads(stamp.read_text())
        if recorded.get("digest") == digest:
            return LayerReport(**{**recorded["report"], "reused": True})
    if not spec.requirements:
        raise PackageError(f"layer {spec.name} has no requirements")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        requirements = staging / "requirements.txt"
        requirements.write_text("\n".join(spec.requirements) + "\n")
        _pip_install(requirements, staging / "python")
        requirements.unlink()
        trimmed = trim(staging / "python")
        report = LayerReport(
            name=spec.name,
            path=str(target),
            unzipped_bytes=tree_bytes(staging / "python"),
            files=sum(1 for p in (staging / "python").rglob("*") if p.is_file()),
            reused=False,
            trimmed_bytes=trimmed,
            largest=largest_entries(staging / "python"),
        )
        (staging / STAMP_FILE).write_text(
            json.dumps({"digest": digest, "report": asdict(report)}, indent=2)
        )
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _requirement_name(line: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(Requirement(line).name))


def pip_command(requirements: Path, target: Path) -> list[str]:
    """pip for another platform: wheels only (nothing compiles here for Lambda)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]
    command += ["--disable-pip-version-check", "--target", str(target)]
    command += ["--implementation", "cp", "--python-version", PYTHON_VERSION]
    for platform_tag in PLATFORMS:
        command += ["--platform", platform_tag]
    command += ["--only-binary=:all:", "-r", str(requirements)]
    return command


def _pip_install(requirements: Path, target: Path) -> None:
    completed = subprocess.run(
        pip_command(requirements, target),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    if completed.returncode != 0:
        raise PackageError(f"pip could not build the layer: {completed.stderr.strip()[-3000:]}")


def trim(root: Path) -> int:
    """Delete what the runtime never reads (see ``_TRIM_*``), strip symbol tables; bytes freed."""
    freed = 0
    for relative in _TRIM_PATHS:
        path = root / relative
        if path.is_dir():
            freed += tree_bytes(path)
            shutil.rmtree(path)
    for pattern in _TRIM_GLOBS:
        for path in root.glob(pattern):
            freed += path.stat().st_size
            path.unlink()
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in _TRIM_DIRS:
            freed += tree_bytes(path)
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith(_TRIM_SUFFIXES):
            freed += path.stat().st_size
            path.unlink()
    return freed + strip_symbols(root)


def binutils() -> tuple[str, str] | None:
    """GNU ``strip`` and ``readelf``, if both are here (None: layers keep symbol tables)."""
    strip, readelf = shutil.which("strip"), shutil.which("readelf")
    if not strip or not readelf:
        return None
    try:
        version = subprocess.run(
            [strip, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    return (strip, readelf) if "GNU" in version else None


def strip_symbols(root: Path) -> int:
    """Strip the ELF symbol tables of the shared libraries under ``root``; bytes freed.

    Skips what auditwheel grafted or patched (see the module doc) and anything ``strip``
    fails on; a file is replaced only by a smaller stripped copy.
    """
    tools = binutils()
    if tools is None:
        return 0
    strip, readelf = tools
    freed = 0
    for path in sorted(root.rglob("*.so*")):
        if not path.is_file() or path.is_symlink() or not _is_elf(path):
            continue
        if any(part.endswith(".libs") for part in path.relative_to(root).parts[:-1]):
            continue
        dynamic = subprocess.run(
            [readelf, "-d", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        if dynamic.returncode != 0 or "(RPATH)" in dynamic.stdout or "(RUNPATH)" in dynamic.stdout:
            continue
        stripped = path.with_name(path.name + ".stripped")
        done = subprocess.run(
            [strip, "--strip-unneeded", "-o", str(stripped), str(path)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        before = path.stat().st_size
        if done.returncode == 0 and stripped.is_file() and stripped.stat().st_size < before:
            shutil.copymode(path, stripped)
            freed += before - stripped.stat().st_size
            stripped.replace(path)
        else:
            stripped.unlink(missing_ok=True)
    return freed


def _is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def build_function(spec: FunctionSpec, out: Path = DEFAULT_OUT, repo: Path = REPO) -> Path:
    """The function's folder plus a copy of ``learnrec/`` (no tests, no stale caches)."""
    source = repo / spec.source
    target = function_dir(spec.name, out)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=_FUNCTION_IGNORE)
    shutil.copytree(repo / "learnrec", target / "learnrec", ignore=_FUNCTION_IGNORE)
    return target


_PRECOMPILE_PROBE = """
import importlib, importlib.util, json, py_compile, sys
paths, module = json.loads(sys.argv[1])
sys.path[:0] = paths
try:
    importlib.import_module(module)
except Exception:
    pass  # compile what did import; import_check reports the failure
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
done = 0
for loaded in list(sys.modules.values()):
    source = getattr(loaded, "__file__", None) or ""
    if source.endswith(".py") and any(source.startswith(p + "/") for p in paths):
        cached = importlib.util.cache_from_source(source)
        if py_compile.compile(source, cfile=cached, invalidation_mode=mode, doraise=False):
            done += 1
print(done)
"""


def precompile_cold_path(spec: FunctionSpec, python: str, out: Path = DEFAULT_OUT) -> int:
    """Compile (3.12, unchecked-hash) every module the handler's import loads; returns how many.

    Runs the import as :func:`import_check` does (isolated, only the package on the
    path); the pycs land in the function folder and in its layers. Nothing else writes
    bytecode into them (``-B`` here and in the import check), so what is measured and
    deployed is the same whatever ran before.
    """
    paths = [str(function_dir(spec.name, out).resolve())]
    paths += [str((layer_dir(layer, out) / "python").resolve()) for layer in spec.layers]
    probe = json.dumps([paths, _module(spec)])
    completed = subprocess.run(
        [python, "-I", "-S", "-B", "-c", _PRECOMPILE_PROBE, probe],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=function_dir(spec.name, out),
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"},
    )
    lines = completed.stdout.strip().splitlines()
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def _module(spec: FunctionSpec) -> str:
    return spec.handler.rsplit(".", 1)[0]


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root``: what Lambda counts as unzipped size."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def largest_entries(root: Path, top: int = 8) -> dict[str, int]:
    """The biggest top-level entries (packages, ``*.libs``) of an installed tree."""
    sizes = {
        entry.name: tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
        for entry in root.iterdir()
        if not entry.name.endswith(".dist-info")
    }
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:top])


def zipped_bytes(roots: Sequence[Path]) -> int:
    """Size of the deployment zips of ``roots`` (deflate, as the CDK asset bundler uses)."""
    total = 0
    with tempfile.TemporaryDirectory() as scratch:
        for number, root in enumerate(roots):
            archive = Path(scratch) / f"{number}.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                for path in sorted(root.rglob("*")):
                    if path.is_file() and path.name != STAMP_FILE:
                        zf.write(path, path.relative_to(root))
            total += archive.stat().st_size
    return total


# ----------------------------------------------------------------------------- checking

# What the python3.12 runtime has besides the standard library: boto3 and its closure.
# Built like a layer, only to run import checks as Lambda would; never deployed.
RUNTIME_EMULATION = LayerSpec(
    "lambda-runtime",
    (
        "boto3==1.44.8",
        "botocore==1.44.8",
        "s3transfer==0.19.3",
        "jmespath==1.1.0",
        "python-dateutil==2.9.0.post0",
        "six==1.17.0",
        "urllib3==2.8.0",
    ),
)
# Must never be imported while serving: too big for the package, too slow for a cold start.
FORBIDDEN_AT_RUNTIME = ("scipy", "sklearn", "pandas", "tensorflow", "tqdm")


@dataclass(frozen=True)
class ImportCheck:
    """Importing a built function's handler with python3.12 and only its package on the path."""

    function: str
    python: str
    ok: bool
    import_s: float | None
    error: str | None
    forbidden_imported: tuple[str, ...]
    forbidden_present: tuple[str, ...]


def find_python(explicit: str | None = None) -> str | None:
    """A CPython 3.12 (the runtime's version) to load the built wheels with, if any.

    ``explicit`` wins; otherwise ``python3.12`` on PATH, then pyenv's versions. None
    when nothing suitable runs here: the check is then skipped, not failed.
    """
    candidates: list[str | None] = [explicit] if explicit else []
    if not explicit:
        candidates.append(shutil.which("python3.12"))
        pyenv = Path.home() / ".pyenv" / "versions"
        candidates += [str(p) for p in sorted(pyenv.glob("3.12*/bin/python3.12"), reverse=True)]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        except OSError:
            continue
        if version == PYTHON_VERSION:
            return candidate
    if explicit:
        raise ValueError(f"{explicit} is not a CPython {PYTHON_VERSION} interpreter")
    return None


_IMPORT_PROBE = """
import importlib, importlib.util, json, sys, time
paths, module, forbidden = json.loads(sys.argv[1])
sys.path[:0] = paths
started = time.perf_counter()
try:
    importlib.import_module(module)
    result = {"ok": True, "error": None, "import_s": time.perf_counter() - started}
except Exception as error:
    result = {"ok": False, "error": f"{type(error).__name__}: {error}", "import_s": None}
result["forbidden_imported"] = [m for m in forbidden if m in sys.modules]
result["forbidden_present"] = [m for m in forbidden if importlib.util.find_spec(m)]
print(json.dumps(result))
"""


def import_check(
    name: str,
    python: str,
    out: Path = DEFAULT_OUT,
    *,
    functions: dict[str, FunctionSpec] | None = None,
    env: dict[str, str] | None = None,
    runtime: bool = True,
) -> ImportCheck:
    """Import the handler of built function ``name`` as Lambda would, in a fresh process.

    The interpreter runs isolated and without site-packages (``-I -S``): only the
    function folder, its layers and the runtime's boto3 are on the path, so a module
    missing from the layers, or trimmed away, fails here instead of in AWS.
    ``runtime=False`` leaves boto3 out (and does not build it).
    """
    spec = (FUNCTIONS if functions is None else functions)[name]
    paths = [str(function_dir(name, out).resolve())]
    paths += [str((layer_dir(layer, out) / "python").resolve()) for layer in spec.layers]
    if runtime:
        provided = build_layer(RUNTIME_EMULATION, out / "runtime")
        paths.append(str((Path(provided.path) / "python").resolve()))
    module = spec.handler.rsplit(".", 1)[0]
    completed = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-B",  # writes no bytecode into the package it checks
            "-c",
            _IMPORT_PROBE,
            json.dumps([paths, module, FORBIDDEN_AT_RUNTIME]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=function_dir(name, out),
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", **(env or {})},
    )
    try:
        result = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {
            "ok": False,
            "error": (completed.stderr.strip() or "no output")[-2000:],
            "import_s": None,
            "forbidden_imported": [],
            "forbidden_present": [],
        }
    return ImportCheck(
        function=name,
        python=python,
        ok=bool(result["ok"]) and not result["forbidden_imported"],
        import_s=None if result["import_s"] is None else round(float(result["import_s"]), 3),
        error=result["error"],
        forbidden_imported=tuple(result["forbidden_imported"]),
        forbidden_present=tuple(result["forbidden_present"]),
    )
