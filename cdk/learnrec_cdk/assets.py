"""What the constructs deploy, as plain values: built function and layer folders.

:func:`lambda_assets` runs :func:`learnrec_dev.packaging.build` (which reuses layers whose
pinned requirements did not change, and fails when a function plus its layers would
exceed Lambda's 250 MB) and describes the result; constructs only see paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from learnrec_dev import packaging


@dataclass(frozen=True)
class FunctionAsset:
    name: str
    code: Path
    handler: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class LambdaAssets:
    functions: dict[str, FunctionAsset]
    layers: dict[str, Path]
    report: packaging.PackageReport


def lambda_assets(out: Path, names: Iterable[str] | None = None) -> LambdaAssets:
    """Build (or reuse) the named functions (default: all) and their layers under ``out``."""
    report = packaging.build(out, only=list(packaging.FUNCTIONS if names is None else names))
    functions = {
        f.name: FunctionAsset(f.name, Path(f.path), f.handler, tuple(f.layers))
        for f in report.functions
    }
    layers = {layer.name: Path(layer.path) for layer in report.layers}
    return LambdaAssets(functions, layers, report)


def size_summary(report: packaging.PackageReport) -> str:
    """One line per function: unzipped code plus layers against Lambda's limit."""
    limit = report.limit_bytes / 2**20
    lines = [
        f"{f.name}: {f.unzipped_bytes / 2**20:.1f} of {limit:.0f} MB unzipped "
        f"(code {f.code_bytes / 2**20:.1f} MB, layers {', '.join(f.layers)})"
        for f in report.functions
    ]
    reused = [layer.name for layer in report.layers if layer.reused]
    lines.append(f"layers reused: {', '.join(reused) or 'none'} (under {report.out})")
    return "\n".join(lines)
