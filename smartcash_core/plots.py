"""Optional result plots (the ``plots`` extra: matplotlib): per-class AP bars and the denomination confusion.

Plotting stays out of the metrics code: it only reads a finished ``ValidationResult``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartcash_core.errors import SmartCashError

if TYPE_CHECKING:
    from smartcash_core.validate import ValidationResult


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SmartCashError("plots need matplotlib: pip install 'smartcash-validation[plots]'") from exc
    return plt


def write_plots(result: ValidationResult, directory: Path) -> list[Path]:
    """Write ``ap_mapped.png``, ``ap_fine.png`` and ``denomination_confusion.png``; return their paths."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        _ap_bars(plt, result.metrics["per_class"], directory / "ap_mapped.png", "mapped classes"),
        _ap_bars(plt, result.metrics["fine"]["per_class"], directory / "ap_fine.png", "fine classes"),
        _confusion(plt, result.metrics["classification"], directory / "denomination_confusion.png"),
    ]
    return written


def _ap_bars(plt: Any, per_class: list[dict[str, Any]], path: Path, title: str) -> Path:
    figure, axes = plt.subplots(figsize=(max(6, len(per_class) * 0.6), 4))
    names = [entry["name"] for entry in per_class]
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], [entry["ap50"] for entry in per_class], width=0.4, label="AP50")
    ap50_95 = [entry["ap50_95"] for entry in per_class]
    axes.bar([p + 0.2 for p in positions], ap50_95, width=0.4, label="AP50-95")
    axes.set_xticks(list(positions), names, rotation=60, ha="right")
    axes.set_ylim(0, 1)
    axes.set_title(f"AP per class ({title})")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _confusion(plt: Any, classification: dict[str, Any], path: Path) -> Path:
    labels, matrix = classification["labels"], classification["confusion_matrix"]
    figure, axes = plt.subplots(figsize=(6, 5))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
