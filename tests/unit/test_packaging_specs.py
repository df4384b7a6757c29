"""Layer specs: pinned as tested, complete for what each function imports, nothing extra.

Completeness is checked against the dependency metadata installed in this venv (the same
versions, by constraints.txt), so a dependency added to a package the layers carry shows
up here rather than as an ImportError in Lambda.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from learnrec_dev import packaging

REPO = Path(__file__).resolve().parents[2]
LAMBDA_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}


def _pins(lines: tuple[str, ...]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line} is not pinned"
        pins[str(canonicalize_name(requirement.name))] = specifier.version
    return pins


def test_every_layer_pin_is_the_tested_version() -> None:
    constraints = REPO / "requirements" / "constraints.txt"
    tested = _pins(packaging.read_requirements(constraints))
    assert packaging.LAYERS, "no layer specs found under layers/"
    for layer in packaging.LAYERS.values():
        for name, version in _pins(layer.requirements).items():
            assert tested.get(name) == version, f"layer {layer.name}: {name}=={version}"
            assert name not in packaging.RUNTIME_PROVIDED, f"{name} comes with the runtime"
            assert name not in packaging.OMITTED


def test_functions_use_known_layers_within_lambdas_limit() -> None:
    for function in packaging.FUNCTIONS.values():
        assert 1 <= len(function.layers) <= packaging.MAX_LAYERS
        assert set(function.layers) <= set(packaging.LAYERS)
        assert function.handler.count(".") == 1


@pytest.mark.parametrize("function", sorted(packaging.FUNCTIONS))
def test_each_functions_layers_hold_their_whole_dependency_closure(function: str) -> None:
    spec = packaging.FUNCTIONS[function]
    packaged: set[str] = set()
    for layer in spec.layers:
        packaged |= set(_pins(packaging.LAYERS[layer].requirements))
    allowed = packaged | set(packaging.RUNTIME_PROVIDED) | set(packaging.OMITTED)
    missing: dict[str, str] = {}
    for name in packaged:
        for text in metadata.requires(name) or []:
            child = Requirement(text)
            if child.marker is not None and not child.marker.evaluate(
                {**LAMBDA_MARKERS, "extra": ""}
            ):
                continue
            child_name = canonicalize_name(child.name)
            if child_name not in allowed:
                missing[child_name] = name
    # PyJWT[crypto] is how the app asks for cryptography; it is in the same layer.
    assert not missing, f"needed but in none of {spec.layers}: {missing}"


def test_pip_builds_binary_wheels_for_the_lambda_platform(tmp_path: Path) -> None:
    command = packaging.pip_command(tmp_path / "r.txt", tmp_path / "python")
    assert "--no-deps" in command and "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.12"
    platforms = {command[i + 1] for i, arg in enumerate(command) if arg == "--platform"}
    # glibc 2.34 (python3.12 runtime): manylinux_2_28 wheels (onnxruntime, xgboost) fit.
    assert {"manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"} <= platforms
    assert "manylinux_2_35_x86_64" not in platforms


def test_trim_drops_only_what_the_runtime_never_reads(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "x" * 10,
        "pkg/core.py": "x" * 10,
        "pkg/tests/test_core.py": "x" * 100,
        "pkg/__pycache__/core.cpython-312.pyc": "x" * 100,
        "pkg/core.pyi": "x" * 100,
        "pkg/testing/__init__.py": "x" * 10,  # a runtime module, despite the name
        "numpy/_core/include/numpy/arrayobject.h": "x" * 100,
        "onnxruntime/capi/libonnxruntime.so.1.32.0": "x" * 100,
        "onnxruntime/capi/onnxruntime_pybind11_state.so": "x" * 10,
        "onnxruntime/transformers/optimizer.py": "x" * 100,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert packaging.trim(tmp_path) == 6 * 100
    kept = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert kept == [
        "onnxruntime/capi/onnxruntime_pybind11_state.so",
        "pkg/__init__.py",
        "pkg/core.py",
        "pkg/testing/__init__.py",
    ]


def test_unknown_or_absent_functions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown function"):
        packaging.build(tmp_path, only=["nope"])
    absent = {"ghost": packaging.FunctionSpec("ghost", "functions/ghost", "handler.handler", ())}
    with pytest.raises(FileNotFoundError, match="no handler"):
        packaging.build(tmp_path, only=["ghost"], functions=absent)
    # Not asked for by name: a function without a handler yet is listed, not built.
    report = packaging.build(tmp_path, functions=absent, layers={})
    assert report.missing == ["ghost"] and report.functions == [] and report.fits


def test_the_api_ships_no_faiss_and_leaves_a_layer_slot_free() -> None:
    api = packaging.FUNCTIONS["api"]
    assert len(api.layers) <= packaging.MAX_LAYERS - 1
    for layer in api.layers:
        assert "faiss-cpu" not in _pins(packaging.LAYERS[layer].requirements), layer


@pytest.mark.skipif(packaging.binutils() is None, reason="GNU strip/readelf not installed")
def test_strip_keeps_extensions_importable_and_leaves_patched_libraries_alone(
    tmp_path: Path,
) -> None:
    import importlib.util
    import shutil
    import subprocess
    import sys

    def installed(package: str, pattern: str) -> Path:
        spec = importlib.util.find_spec(package)
        assert spec and spec.submodule_search_locations
        return next(Path(spec.submodule_search_locations[0]).glob(pattern))

    plain = installed("wrapt", "_wrappers*.so")  # unstripped, no RPATH
    patched = installed("numpy", "_core/_multiarray_umath*.so")  # auditwheel's RPATH
    root = tmp_path / "python"
    (root / "pkg").mkdir(parents=True)
    (root / "vendored.libs").mkdir()
    shutil.copy2(plain, root / "pkg" / plain.name)
    shutil.copy2(patched, root / "pkg" / patched.name)
    shutil.copy2(plain, root / "vendored.libs" / plain.name)
    (root / "pkg" / "notes.so.txt").write_text("not an ELF file")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    freed = packaging.strip_symbols(root)

    stripped = root / "pkg" / plain.name
    assert 0 < freed == len(before[stripped]) - stripped.stat().st_size
    assert stripped.stat().st_mode == plain.stat().st_mode
    unchanged = [p for p in before if p != stripped]
    assert all(p.read_bytes() == before[p] for p in unchanged)
    assert not list(root.rglob("*.stripped"))
    # The stripped extension still imports and works (its dynamic symbols stayed).
    probe = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('_wrappers', r'{stripped}'); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "print(module.ObjectProxy([1, 2, 3])[1:])"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[2, 3]"
