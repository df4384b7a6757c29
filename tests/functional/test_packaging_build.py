"""A real (small) layer build with pip for the Lambda platform, reuse, size limit, import check.

Downloads one tiny pure-Python wheel from the package index; the full layers (onnxruntime,
faiss, ...) are built by ``learnrec benchmark package``, not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learnrec_dev import packaging

TINY = packaging.LayerSpec("tiny", ("six==1.17.0",))


def _repo(tmp_path: Path, handler: str) -> Path:
    repo = tmp_path / "repo"
    (repo / "functions" / "demo").mkdir(parents=True)
    (repo / "functions" / "demo" / "handler.py").write_text(handler)
    (repo / "learnrec" / "__pycache__").mkdir(parents=True)
    (repo / "learnrec" / "__init__.py").write_text("VALUE = 42\n")
    (repo / "learnrec" / "__pycache__" / "x.pyc").write_bytes(b"stale")
    return repo


DEMO = {"demo": packaging.FunctionSpec("demo", "functions/demo", "handler.handler", ("tiny",))}
HANDLER = "import six\nimport learnrec\n\ndef handler(event, context):\n    return learnrec.VALUE\n"


def test_build_a_layer_and_a_function(tmp_path: Path) -> None:
    repo, out = _repo(tmp_path, HANDLER), tmp_path / "lambda"
    report = packaging.build(out, repo=repo, layers={"tiny": TINY}, functions=DEMO)

    layer = packaging.layer_dir("tiny", out)
    assert (layer / "python" / "six.py").is_file()
    # pycs for the runtime's 3.12 when one is here to compile them, never any other's.
    pycs = {p.name for p in layer.rglob("*.pyc")}
    assert pycs == ({"six.cpython-312.pyc"} if report.layers[0].compiled else set())
    assert report.layers[0].compiled == (packaging.find_python() is not None)
    stamp = json.loads((layer / packaging.STAMP_FILE).read_text())
    assert stamp["digest"].startswith(TINY.digest)
    function = packaging.function_dir("demo", out)
    assert (function / "handler.py").is_file() and (function / "learnrec" / "__init__.py").is_file()
    assert not (function / "learnrec" / "__pycache__" / "x.pyc").exists()
    (demo,) = report.functions
    assert demo.fits and demo.layers == ("tiny",)
    assert demo.unzipped_bytes == demo.code_bytes + report.layers[0].unzipped_bytes
    assert 0 < packaging.zipped_bytes([layer]) < report.layers[0].unzipped_bytes

    # Same requirements: reused, not reinstalled. Other requirements: rebuilt.
    again = packaging.build(out, repo=repo, layers={"tiny": TINY}, functions=DEMO)
    assert (
        again.layers[0].reused and again.layers[0].unzipped_bytes == report.layers[0].unzipped_bytes
    )
    changed = packaging.LayerSpec("tiny", ("six==1.16.0",))
    rebuilt = packaging.build(out, repo=repo, layers={"tiny": changed}, functions=DEMO)
    assert not rebuilt.layers[0].reused
    assert "1.16.0" in next((layer / "python").glob("six-*.dist-info")).name


def test_a_package_over_the_limit_raises_with_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = _repo(tmp_path, HANDLER), tmp_path / "lambda"
    monkeypatch.setattr(packaging, "LAMBDA_UNZIPPED_LIMIT", 1024)
    with pytest.raises(packaging.PackageTooLarge, match="demo") as raised:
        packaging.build(out, repo=repo, layers={"tiny": TINY}, functions=DEMO)
    assert not raised.value.report.fits
    assert packaging.function_dir("demo", out).is_dir()  # built anyway, to inspect


def test_a_broken_requirement_fails_clearly_and_leaves_no_half_layer(tmp_path: Path) -> None:
    repo, out = _repo(tmp_path, HANDLER), tmp_path / "lambda"
    broken = packaging.LayerSpec("tiny", ("six==0.0.0.404",))
    with pytest.raises(packaging.PackageError, match="pip could not build"):
        packaging.build(out, repo=repo, layers={"tiny": broken}, functions=DEMO)
    assert not packaging.layer_dir("tiny", out).exists()


@pytest.mark.skipif(packaging.find_python() is None, reason="no CPython 3.12 on this machine")
def test_import_check_loads_the_handler_from_its_package_only(tmp_path: Path) -> None:
    python = packaging.find_python()
    assert python is not None
    repo, out = _repo(tmp_path, HANDLER), tmp_path / "lambda"
    packaging.build(out, repo=repo, layers={"tiny": TINY}, functions=DEMO)
    check = packaging.import_check("demo", python, out, functions=DEMO, runtime=False)
    assert check.ok and check.error is None and check.import_s is not None

    # numpy is installed for the test runner but in no layer: the check must notice.
    (repo / "functions" / "demo" / "handler.py").write_text("import numpy\n" + HANDLER)
    packaging.build(out, repo=repo, layers={"tiny": TINY}, functions=DEMO)
    check = packaging.import_check("demo", python, out, functions=DEMO, runtime=False)
    assert not check.ok and "numpy" in str(check.error)
