"""``learnrec benchmark package``: does each Lambda function, with its layers, deploy?

Builds the layers and function folders exactly as the CDK app deploys them
(:mod:`learnrec_dev.packaging`), then reports per function its unzipped size with layers
(what Lambda's 250 MB limit counts), its zipped size (what is uploaded), and whether its
handler imports with CPython 3.12 and nothing but its own package on the path. Writes
``DIR/package.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from learnrec_dev import packaging

RESULT_FILE = "package.json"


def run_package(
    out: Path,
    build_dir: Path = packaging.DEFAULT_OUT,
    *,
    only: list[str] | None = None,
    python: str | None = None,
    zipped: bool = True,
) -> dict[str, Any]:
    """Build, measure and check; returns what it writes to ``out/package.json``.

    A package over the limit is a result, not an error: it is written with
    ``fits: false`` so the figures are there to act on.
    """
    try:
        report = packaging.build(build_dir, only=only)
    except packaging.PackageTooLarge as too_large:
        report = too_large.report
    interpreter = packaging.find_python(python)
    layer_zips: dict[str, int] = {}
    functions: dict[str, Any] = {}
    for function in report.functions:
        entry: dict[str, Any] = {
            "handler": function.handler,
            "layers": list(function.layers),
            "code_mb": _mb(function.code_bytes),
            "unzipped_mb": _mb(function.unzipped_bytes),
            "unzipped_bytes": function.unzipped_bytes,
            "limit_mb": _mb(report.limit_bytes),
            "fits": function.fits,
        }
        if zipped:
            for layer in function.layers:
                if layer not in layer_zips:
                    root = packaging.layer_dir(layer, build_dir)
                    layer_zips[layer] = packaging.zipped_bytes([root])
            code_zip = packaging.zipped_bytes([Path(function.path)])
            entry["zipped_mb"] = _mb(code_zip + sum(layer_zips[x] for x in function.layers))
            entry["code_zipped_mb"] = _mb(code_zip)
        if interpreter:
            check = packaging.import_check(function.name, interpreter, build_dir)
            entry["import_check"] = {
                "ok": check.ok,
                "import_s": check.import_s,
                "error": check.error,
                "forbidden_imported": list(check.forbidden_imported),
                "forbidden_present": list(check.forbidden_present),
            }
        else:
            entry["import_check"] = {"ok": None, "error": "skipped: no CPython 3.12 found"}
        functions[function.name] = entry
    result: dict[str, Any] = {
        "build_dir": str(build_dir),
        "limit_mb": _mb(report.limit_bytes),
        "fits": report.fits,
        "imports_ok": all(f["import_check"]["ok"] is not False for f in functions.values()),
        "functions": functions,
        "missing_functions": report.missing,
        "layers": {
            layer.name: {
                "unzipped_mb": _mb(layer.unzipped_bytes),
                "zipped_mb": _mb(layer_zips[layer.name]) if layer.name in layer_zips else None,
                "files": layer.files,
                "trimmed_mb": _mb(layer.trimmed_bytes),
                "reused": layer.reused,
                "largest_mb": {k: _mb(v) for k, v in layer.largest.items()},
            }
            for layer in report.layers
        },
        "runtime_provided": list(report.runtime_provided),
        "python": packaging.PYTHON_VERSION,
        "platforms": list(packaging.PLATFORMS),
        "import_check_python": interpreter,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def format_table(result: dict[str, Any]) -> str:
    """One row per function: sizes against the limit, the import check."""
    lines = [
        f"{'function':<10} {'layers':<18} {'code MB':>8} {'unzipped MB':>12} {'zipped MB':>10} "
        f"{'limit':>6}  {'size':<5} import",
    ]
    for name, f in result["functions"].items():
        check = f["import_check"]
        if check["ok"] is None:
            verdict = "skipped"
        elif check["ok"]:
            verdict = f"ok ({check['import_s']:.2f} s)"
        else:
            verdict = f"FAIL: {check['error'] or check['forbidden_imported']}"
        zipped = f"{f['zipped_mb']:.1f}" if "zipped_mb" in f else "-"
        lines.append(
            f"{name:<10} {','.join(f['layers']):<18} {f['code_mb']:>8.1f} "
            f"{f['unzipped_mb']:>12.1f} {zipped:>10} {f['limit_mb']:>6.0f}  "
            f"{'ok' if f['fits'] else 'OVER':<5} {verdict}"
        )
    if result["missing_functions"]:
        lines.append(f"not built (no handler yet): {', '.join(result['missing_functions'])}")
    lines.append(f"not packaged (the runtime has them): {', '.join(result['runtime_provided'])}")
    return "\n".join(lines)


def add_package_command(bench_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``benchmark package`` to the ``benchmark`` subcommands of the CLI."""
    package = bench_subparsers.add_parser(
        "package", help="build the Lambda layers and functions; sizes against the 250 MB limit"
    )
    package.add_argument("--out", type=Path, required=True, help="where package.json goes")
    package.add_argument(
        "--build-dir",
        type=Path,
        default=packaging.DEFAULT_OUT,
        help=f"layers and function folders (default {packaging.DEFAULT_OUT}, as the CDK app)",
    )
    package.add_argument(
        "--function",
        action="append",
        dest="functions",
        choices=sorted(packaging.FUNCTIONS),
        help="only this function (repeatable; default: every function with a handler)",
    )
    package.add_argument("--python", help="CPython 3.12 for the import check (default: search)")
    package.add_argument("--no-zip", action="store_true", help="skip the zipped sizes")
    package.set_defaults(func=_package_command)


def _package_command(args: argparse.Namespace) -> int:
    result = run_package(
        args.out, args.build_dir, only=args.functions, python=args.python, zipped=not args.no_zip
    )
    print(format_table(result))
    print(f"figures: {args.out / RESULT_FILE}")
    return 0 if result["fits"] and result["imports_ok"] else 1


def _mb(size: int) -> float:
    return round(size / 2**20, 1)
