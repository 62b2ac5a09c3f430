"""Result plots (the ``plots`` extra: matplotlib): PR curve, F1 curve, detection confusion matrix, image-level
denomination confusion, and per-class AP bars.

Plotting stays out of the metrics code. It runs in two steps so a service can do the cheap part at job time
and render only on request:

1. :func:`plot_data` (numpy only) reduces a finished result and its evaluator's public state
   (``state_arrays()``) to a fixed-size :class:`PlotData`: curves sampled at 1000 points, not per prediction.
   :func:`save_plot_data` / :func:`load_plot_data` keep it as a compressed ``.npz`` (no pickles).
2. :func:`render_plot` draws one of :data:`PLOT_NAMES` from it with matplotlib's object API (no pyplot
   global state, so worker threads may render concurrently).

Curves follow YOLOv5's ``ap_per_class`` at IoU 0.5 on the headline (mapped) view: precision is the
monotone envelope sampled at recall ``px``; precision, recall and F1 against confidence ``px`` are linear
interpolations over the predictions sorted by confidence.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from smartcash_core.errors import SmartCashError

if TYPE_CHECKING:
    from smartcash_core.metrics import DetectionEvaluator
    from smartcash_core.validation.params import ValidationResult

CURVE_POINTS = 1000
PLOT_NAMES: tuple[str, ...] = (
    "pr_curve.png",
    "f1_curve.png",
    "confusion_matrix.png",
    "denomination_confusion.png",
    "ap_mapped.png",
    "ap_fine.png",
)
PLOT_DATA_FILE = "plot_data.npz"
_DPI = 120


class PlotsUnavailable(SmartCashError):
    """matplotlib is not installed, or the result carries no metric state to plot from."""


@dataclass(frozen=True)
class Curves:
    """Per class with ground truth (rows, ``[C, P]``), sampled at ``px`` (``[P]``, 0..1)."""

    px: np.ndarray
    precision_at_recall: np.ndarray
    precision_at_conf: np.ndarray
    recall_at_conf: np.ndarray
    f1_at_conf: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class PlotData:
    """Everything the plots need, fixed-size (independent of the number of predictions)."""

    px: np.ndarray
    precision_at_recall: np.ndarray
    f1_at_conf: np.ndarray
    curve_names: np.ndarray
    curve_ap50: np.ndarray
    confusion: np.ndarray  # [K + 1, K + 1] predicted x true, background last
    confusion_names: np.ndarray
    denomination_matrix: np.ndarray  # true x predicted images
    denomination_labels: np.ndarray
    ap_mapped_names: np.ndarray
    ap_mapped: np.ndarray  # [C, 2] AP50, AP50-95
    ap_fine_names: np.ndarray
    ap_fine: np.ndarray


# ----------------------------------------------------------------------------------------------------------
# Curves (numpy)
# ----------------------------------------------------------------------------------------------------------


def pr_f1_curves(
    true_positive: np.ndarray, confidence: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray
) -> Curves:
    """PR and F1 curves from per-prediction TP flags ``[N]`` bool, scores ``[N]``, classes ``[N]`` and the
    ground-truth classes ``[M]``; one row per class with ground truth. Empty inputs give empty rows."""
    order = np.argsort(-confidence, kind="stable")
    hit, score, cls = true_positive[order].astype(bool), confidence[order], pred_classes[order]
    classes, gt_counts = np.unique(gt_classes, return_counts=True)
    px = np.linspace(0, 1, CURVE_POINTS)
    shape = (classes.size, CURVE_POINTS)
    at_recall, p_conf, r_conf = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for row, class_id in enumerate(classes):
        mine = cls == class_id
        if not mine.any():
            continue
        tp_cum = np.cumsum(hit[mine])
        recall = tp_cum / gt_counts[row]
        precision = tp_cum / np.arange(1, tp_cum.size + 1)
        # np.interp needs increasing x: confidence falls along the sorted predictions, so negate it
        r_conf[row] = np.interp(-px, -score[mine], recall, left=0)
        p_conf[row] = np.interp(-px, -score[mine], precision, left=1)
        at_recall[row] = _precision_envelope(px, recall, precision)
    denominator = p_conf + r_conf
    f1 = np.divide(2 * p_conf * r_conf, denominator, out=np.zeros(shape), where=denominator > 0)
    return Curves(px, at_recall, p_conf, r_conf, f1, classes)


def _precision_envelope(px: np.ndarray, recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """YOLOv5's ``compute_ap`` envelope (precision made non-increasing in recall), sampled at ``px``."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return np.interp(px, mrec, mpre)


def plot_data(result: ValidationResult, evaluator: DetectionEvaluator | None = None) -> PlotData:
    """Reduce a finished result (and its evaluator, default ``result.evaluator``) to :class:`PlotData`."""
    from smartcash_core.metrics.confusion import map_confusion

    evaluator = evaluator if evaluator is not None else getattr(result, "evaluator", None)
    if evaluator is None:
        raise PlotsUnavailable("the result carries no metric state; plots need the pass's evaluator")
    state = evaluator.state_arrays()
    table = evaluator.class_table
    pred_classes = np.asarray(state["pred_class"], dtype=np.int64)
    gt_classes = np.asarray(state["gt_class"], dtype=np.int64)
    confusion = np.asarray(state["confusion"], dtype=np.int64)
    if table is None:
        view, names = "fine", [str(c) for c in range(evaluator.num_classes)]
    else:
        view, names = "mapped", list(table.mapped_names)
        mapping = table.map_array()
        pred_classes, gt_classes = mapping[pred_classes], mapping[gt_classes]
        confusion = map_confusion(confusion, mapping, table.num_mapped)
    hits = evaluator.true_positives_at(0, view)  # IoU 0.5, the first threshold
    scores = np.asarray(state["pred_score"], dtype=np.float64)
    curves = pr_f1_curves(hits, scores, pred_classes, gt_classes)
    return _assemble(result, curves, names, confusion)


def _assemble(result: ValidationResult, curves: Curves, names: list[str], confusion: np.ndarray) -> PlotData:
    metrics = result.metrics
    view = metrics if metrics.get("per_class") is not None else metrics["fine"]
    ap_by_id = {entry["id"]: entry["ap50"] for entry in view["per_class"]}
    classification = metrics["classification"]
    return PlotData(
        px=curves.px,
        precision_at_recall=curves.precision_at_recall,
        f1_at_conf=curves.f1_at_conf,
        curve_names=np.asarray([names[int(c)] for c in curves.classes], dtype=str),
        curve_ap50=np.asarray([ap_by_id.get(int(c), np.nan) for c in curves.classes], dtype=np.float64),
        confusion=confusion,
        confusion_names=np.asarray([*names, "background"], dtype=str),
        denomination_matrix=np.asarray(classification["confusion_matrix"], dtype=np.int64),
        denomination_labels=np.asarray(classification["labels"], dtype=str),
        ap_mapped_names=_names(metrics["per_class"]),
        ap_mapped=_ap_table(metrics["per_class"]),
        ap_fine_names=_names(metrics["fine"]["per_class"]),
        ap_fine=_ap_table(metrics["fine"]["per_class"]),
    )


def _names(per_class: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray([entry["name"] for entry in per_class], dtype=str)


def _ap_table(per_class: list[dict[str, Any]]) -> np.ndarray:
    rows = [(entry["ap50"], entry["ap50_95"]) for entry in per_class]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def save_plot_data(data: PlotData, path: Path) -> Path:
    """Write ``data`` as a compressed ``.npz`` (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomically(path, lambda handle: np.savez_compressed(handle, **_plot_arrays(data)))


def plot_data_bytes(data: PlotData) -> bytes:
    """The bytes :func:`save_plot_data` writes, built in memory (a service stores them with the result)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **_plot_arrays(data))
    return buffer.getvalue()


def _plot_arrays(data: PlotData) -> dict[str, np.ndarray]:
    return {item.name: getattr(data, item.name) for item in fields(PlotData)}


def _write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through a temporary sibling, then rename: concurrent readers see the old file or the new one.

    A plain ``open`` (not ``tempfile``) so the file gets the usual umask permissions, not 0600.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_plot_data(path: Path) -> PlotData:
    """Read what :func:`save_plot_data` wrote (``allow_pickle=False``: only plain arrays load)."""
    with np.load(path, allow_pickle=False) as stored:
        missing = [item.name for item in fields(PlotData) if item.name not in stored.files]
        if missing:
            raise PlotsUnavailable(f"{path} is not plot data (missing {missing})")
        return PlotData(**{item.name: stored[item.name] for item in fields(PlotData)})


# ----------------------------------------------------------------------------------------------------------
# Rendering (matplotlib)
# ----------------------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsUnavailable("plots need matplotlib: pip install 'smartcash-validation[plots]'") from exc
    return Figure(figsize=(width, height), layout="constrained")  # keeps outside legends in the picture


def plot_figure(data: PlotData, name: str) -> Any:
    """The matplotlib ``Figure`` of plot ``name`` (one of :data:`PLOT_NAMES`)."""
    drawer = _DRAWERS.get(name)
    if drawer is None:
        raise ValueError(f"unknown plot {name!r}; known plots are {list(PLOT_NAMES)}")
    return drawer(data)


def render_plot(data: PlotData, name: str, path: Path) -> Path:
    """Draw plot ``name`` (one of :data:`PLOT_NAMES`) to ``path`` (written atomically)."""
    figure = plot_figure(data, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "tight": the saved picture grows to hold every label (colour-bar ticks beside a square matrix, too)
    save = {"format": "png", "dpi": _DPI, "bbox_inches": "tight", "pad_inches": 0.1}
    return _write_atomically(path, lambda handle: figure.savefig(handle, **save))


def write_plots(result: ValidationResult, directory: Path) -> list[Path]:
    """Write every plot of :data:`PLOT_NAMES` into ``directory``; return their paths."""
    data = plot_data(result)
    return [render_plot(data, name, directory / name) for name in PLOT_NAMES]


def _legend_outside(axes: Any) -> None:
    """The legend right of the axes, where it covers no curve or bar."""
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _curve_figure(
    data: PlotData,
    curves: np.ndarray,
    labels: list[str],
    mean_label: str,
    axis: tuple[str, str, str],
    banded: bool = False,
) -> Any:
    """One line per class, the class mean in bold black; limits reach a little past 1, so curves at 1 do not
    hide under the frame. ``banded``: earlier classes drawn wider, so curves that coincide (classes at AP
    0.995 all run along precision 1) show as bands of their colours instead of hiding under each other."""
    figure = _figure(8, 5)
    axes = figure.add_subplot()
    colors = _class_colors(len(labels))
    widths = np.linspace(4.0, 1.0, len(labels)) if banded and len(labels) > 1 else [1.2] * len(labels)
    for row, label in enumerate(labels):
        axes.plot(data.px, curves[row], linewidth=widths[row], color=colors[row], label=label)
    axes.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel=axis[0], ylabel=axis[1], title=axis[2])
    if len(curves):
        axes.plot(data.px, curves.mean(axis=0), color="black", linewidth=2.5, label=mean_label)
        _legend_outside(axes)
    else:  # no class has ground truth: an empty chart that says so (and no empty-legend warning)
        axes.text(0.5, 0.5, "no ground truth: no curves", ha="center", va="center")
    return figure


def _class_colors(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(index % palette.N) for index in range(count)]


def _pr_curve(data: PlotData) -> Any:
    labels = [f"{name} {ap:.3f}" for name, ap in zip(data.curve_names, data.curve_ap50, strict=True)]
    mean_ap = float(np.nanmean(data.curve_ap50)) if len(data.curve_ap50) else 0.0
    axis = ("Recall", "Precision", "Precision-recall at IoU 0.5 (legend: AP50)")
    mean_label = f"all classes {mean_ap:.3f} mAP@0.5"
    return _curve_figure(data, data.precision_at_recall, labels, mean_label, axis, banded=True)


def _f1_curve(data: PlotData) -> Any:
    curves = data.f1_at_conf
    labels = [f"{name} {row.max():.2f}" for name, row in zip(data.curve_names, curves, strict=True)]
    mean = curves.mean(axis=0) if len(curves) else np.zeros_like(data.px)
    best = int(mean.argmax())
    mean_label = f"all classes {mean[best]:.2f} at {data.px[best]:.3f}"
    axis = ("Confidence", "F1", "F1 against confidence at IoU 0.5 (legend: best F1)")
    return _curve_figure(data, curves, labels, mean_label, axis)


def _matrix_figure(
    matrix: np.ndarray, true_names: np.ndarray, predicted_names: np.ndarray, title: str
) -> Any:
    """Rows: the true class (y axis), columns: the predicted class (x axis), for every matrix drawn."""
    figure = _figure(max(6, 0.5 * len(predicted_names) + 3), max(5, 0.45 * len(true_names) + 2))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(predicted_names)), [str(c) for c in predicted_names], rotation=60, ha="right")
    axes.set_yticks(range(len(true_names)), [str(r) for r in true_names])
    axes.set(xlabel="predicted", ylabel="true", title=title)
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            axes.text(column, row, str(int(value)), ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes)
    return figure


def _confusion_matrix(data: PlotData) -> Any:
    # stored predicted x true (YOLOv5's layout); drawn transposed, true down the side like the
    # denomination matrix. The background row holds false positives, the background column missed objects.
    names = data.confusion_names
    title = "Detection confusion matrix (conf > 0.25, IoU > 0.45)"
    return _matrix_figure(data.confusion.T, names, names, title)


def _denomination_confusion(data: PlotData) -> Any:
    labels = data.denomination_labels
    title = "Image denomination (largest note vs most confident note)"
    return _matrix_figure(data.denomination_matrix, labels, labels, title)


def _ap_bars(names: np.ndarray, table: np.ndarray, title: str) -> Any:
    figure = _figure(max(7, len(names) * 0.6 + 1.5), 4.5)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    axes.bar(positions - 0.2, table[:, 0], width=0.4, label="AP50")
    axes.bar(positions + 0.2, table[:, 1], width=0.4, label="AP50-95")
    axes.set_xticks(positions, [str(n) for n in names], rotation=60, ha="right")
    axes.set(ylim=(0, 1.02), title=f"AP per class ({title})")
    _legend_outside(axes)
    return figure


_DRAWERS: dict[str, Callable[[PlotData], Any]] = {
    "pr_curve.png": _pr_curve,
    "f1_curve.png": _f1_curve,
    "confusion_matrix.png": _confusion_matrix,
    "denomination_confusion.png": _denomination_confusion,
    "ap_mapped.png": lambda data: _ap_bars(data.ap_mapped_names, data.ap_mapped, "mapped classes"),
    "ap_fine.png": lambda data: _ap_bars(data.ap_fine_names, data.ap_fine, "fine classes"),
}
