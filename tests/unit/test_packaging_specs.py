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
