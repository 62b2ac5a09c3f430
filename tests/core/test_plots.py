"""Plots: PR/F1 curves from the evaluator's state, plot data round trip, ``smartcash validate --plots``."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from smartcash_core.classes import default_class_table
from smartcash_core.cli import main
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.plots import (
    PLOT_NAMES,
    load_plot_data,
    plot_data,
    plot_data_bytes,
    plot_figure,
    pr_f1_curves,
    render_plot,
    save_plot_data,
)
from smartcash_core.validation.runner import run_validation

pytest.importorskip("matplotlib")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5"
WEIGHTS = FIXTURES / "yolov5n_banknotes.pt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_curves_hand_case() -> None:
    """One class, 2 ground truths; predictions 0.9 TP, 0.8 FP, 0.7 TP."""
    curves = pr_f1_curves(
        np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]), np.array([0, 0])
    )
    px = curves.px
    at = {value: int(np.argmin(np.abs(px - value))) for value in (0.0, 0.5, 0.85, 0.95, 0.99)}
    assert curves.classes.tolist() == [0]
    assert curves.precision_at_recall[0, at[0.5]] == pytest.approx(1.0)  # envelope: P=1 up to R=0.5
    assert curves.precision_at_recall[0, at[0.99]] == pytest.approx(2 / 3)  # then 2/3 out to R=1
    assert curves.recall_at_conf[0, at[0.85]] == pytest.approx(0.5)  # R is 0.5 from 0.9 down to 0.8
    assert curves.recall_at_conf[0, at[0.95]] == 0.0  # nothing that confident
    assert curves.f1_at_conf[0, at[0.0]] == pytest.approx(0.8)  # P 2/3, R 1


def test_class_without_predictions_has_flat_zero_curves() -> None:
    curves = pr_f1_curves(np.zeros(0, bool), np.zeros(0), np.zeros(0, np.int64), np.array([2, 5, 5]))
    assert curves.classes.tolist() == [2, 5] and not curves.f1_at_conf.any()


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_tp_flags_agree_with_the_evaluators_per_image_summary(protocol: str) -> None:
    rng = np.random.default_rng(5)
    evaluator = DetectionEvaluator(17, protocol, default_class_table())
    for image in range(12):
        gt = rng.uniform(0, 80, size=(4, 2))
        gt_boxes = np.hstack([gt, gt + rng.uniform(10, 30, size=(4, 2))])
        pred_boxes = np.vstack([gt_boxes + rng.normal(0, 3, gt_boxes.shape), gt_boxes[:2] + 25])
        gt_classes = rng.integers(0, 17, size=4)
        pred_classes = np.concatenate([gt_classes, rng.integers(0, 17, size=2)])
        scores = np.sort(rng.uniform(0.01, 1, size=6))[::-1]
        evaluator.update(pred_boxes, scores, pred_classes, gt_boxes, gt_classes, image_id=image)
    state = evaluator.state_arrays()
    hits = evaluator.true_positives_at(0, "fine")
    confident = state["pred_score"] >= 0.25
    summary = evaluator.per_image_summary(iou=0.5, conf=0.25)
    assert hits.shape == state["pred_score"].shape
    assert int((hits & confident).sum()) == int(summary["tp"].sum()) > 0


@pytest.fixture(scope="module")
def fixture_result():  # type: ignore[no-untyped-def]
    from smartcash_core.checkpoint import load_model

    model = load_model(WEIGHTS, "cpu")
    return run_validation(model, FIXTURES / "val", ValidationParams(imgsz=160, batch_size=16))


def test_pr_curve_integrates_to_the_reported_ap50(fixture_result) -> None:  # type: ignore[no-untyped-def]
    data = plot_data(fixture_result)
    reported = {entry["name"]: entry["ap50"] for entry in fixture_result.metrics["per_class"]}
    assert data.curve_names.tolist() == list(reported)
    for row, name in enumerate(data.curve_names):
        area = np.trapezoid(data.precision_at_recall[row], data.px)
        assert area == pytest.approx(reported[name], abs=0.01), name
    assert data.confusion.shape == (9, 9) and data.confusion.sum() > 0
    assert "evaluator" not in fixture_result.to_dict()


def test_plot_data_round_trips_without_pickles(fixture_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = plot_data(fixture_result)
    loaded = load_plot_data(save_plot_data(data, tmp_path / "data.npz"))
    for name in data.__dataclass_fields__:
        assert np.array_equal(getattr(loaded, name), getattr(data, name)), name
    (tmp_path / "from_memory.npz").write_bytes(plot_data_bytes(data))  # what the service stores
    from_memory = load_plot_data(tmp_path / "from_memory.npz")
    for name in data.__dataclass_fields__:
        assert np.array_equal(getattr(from_memory, name), getattr(data, name)), name


def test_unknown_plot_name_is_refused(fixture_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown plot"):
        render_plot(plot_data(fixture_result), "../evil.png", tmp_path / "x.png")


def test_cli_plots_writes_valid_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "plots"
    argv = ["validate", "--weights", str(WEIGHTS), "--data", str(FIXTURES / "val"), "--imgsz", "160"]
    assert main([*argv, "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in plots.iterdir()) == sorted(PLOT_NAMES)
    for name in PLOT_NAMES:
        path = plots / name
        width, height = png_size(path)
        assert width >= 400 and height >= 300 and path.stat().st_size > 10_000, name
        assert f"plot: {path}" in out


def _drawn(figure):  # type: ignore[no-untyped-def]
    """The figure rendered (Agg), so legend and axes boxes have their final places; and its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return figure, canvas.get_renderer()


def _legend_texts(figure) -> list[str]:  # type: ignore[no-untyped-def]
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


def test_the_f1_legend_shows_each_classes_best_f1_not_its_ap(fixture_result) -> None:  # type: ignore[no-untyped-def]
    data = plot_data(fixture_result)
    texts = _legend_texts(plot_figure(data, "f1_curve.png"))
    best = [f"{name} {row.max():.2f}" for name, row in zip(data.curve_names, data.f1_at_conf, strict=True)]
    assert texts[:-1] == best
    mean = data.f1_at_conf.mean(axis=0)
    assert texts[-1] == f"all classes {mean.max():.2f} at {data.px[mean.argmax()]:.3f}"


def test_the_pr_legend_shows_each_ap_and_the_mean_curves_map(fixture_result) -> None:  # type: ignore[no-untyped-def]
    data = plot_data(fixture_result)
    texts = _legend_texts(plot_figure(data, "pr_curve.png"))
    per_class = {entry["name"]: entry["ap50"] for entry in fixture_result.metrics["per_class"]}
    assert texts[:-1] == [f"{name} {ap:.3f}" for name, ap in per_class.items()]
    assert texts[-1] == f"all classes {fixture_result.metrics['map50']:.3f} mAP@0.5"


@pytest.mark.parametrize("name", ["pr_curve.png", "f1_curve.png", "ap_mapped.png", "ap_fine.png"])
def test_legends_lie_outside_the_plotted_area(fixture_result, name: str) -> None:  # type: ignore[no-untyped-def]
    figure, renderer = _drawn(plot_figure(plot_data(fixture_result), name))
    axes = figure.axes[0]
    legend_box = axes.get_legend().get_window_extent(renderer)
    assert not legend_box.overlaps(axes.get_window_extent(renderer)), name
    assert legend_box.x1 <= figure.bbox.x1 + 1  # and inside the picture


def test_curves_at_one_are_drawn_inside_the_frame(fixture_result) -> None:  # type: ignore[no-untyped-def]
    for name in ("pr_curve.png", "f1_curve.png"):
        axes = plot_figure(plot_data(fixture_result), name).axes[0]
        assert axes.get_ylim()[1] > 1.0 and axes.get_xlim()[1] > 1.0, name


def test_both_confusion_matrices_put_the_true_class_down_the_side(fixture_result) -> None:  # type: ignore[no-untyped-def]
    data = plot_data(fixture_result)
    detection = plot_figure(data, "confusion_matrix.png").axes[0]
    denomination = plot_figure(data, "denomination_confusion.png").axes[0]
    for axes in (detection, denomination):
        assert (axes.get_ylabel(), axes.get_xlabel()) == ("true", "predicted")
    drawn = np.asarray(detection.images[0].get_array())
    assert np.array_equal(drawn, data.confusion.T)  # stored predicted x true
    # the row of true background holds the false positives: predictions that matched no object
    assert np.array_equal(drawn[-1], data.confusion[:, -1]) and drawn[-1].sum() > 0
    assert np.array_equal(np.asarray(denomination.images[0].get_array()), data.denomination_matrix)
