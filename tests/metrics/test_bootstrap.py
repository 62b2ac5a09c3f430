"""``compare_states``: verdicts on known cases, reproducibility, pairing by image keys, refusals and the
intervals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from smartcash_core.classes import ClassTable, default_class_table
from smartcash_core.errors import ComparisonError
from smartcash_core.metrics.bootstrap import ComparableState, compare_states
from smartcash_core.metrics.intervals import BETTER, NO_DIFFERENCE, WORSE, estimate, interval, verdict
from tests.metrics.bootstrap_simulation import Image, comparable, evaluator_of, simulate, untied


@pytest.fixture(scope="module")
def detections() -> list[Image]:
    baseline, _ = simulate(np.random.default_rng(11), 400)
    return baseline


def _without_true_positives(images: list[Image], share: float, seed: int) -> list[Image]:
    """``images`` with ``share`` of the baseline's true positives (IoU 0.5, fine view) removed."""
    hits = evaluator_of(images).true_positives_at(0, "fine")
    drop = hits & (np.random.default_rng(seed).random(hits.size) < share)
    out, used = [], 0
    for boxes, scores, classes, gt, gt_classes in images:
        keep = ~drop[used : used + len(scores)]
        used += len(scores)
        out.append((boxes[keep], scores[keep], classes[keep], gt, gt_classes))
    return out


def _all_estimates(result: dict) -> list[dict]:
    found = []
    for view in ("mapped", "fine"):
        found += [result[view]["map50"], result[view]["map50_95"]]
        for item in result[view]["per_class"]:
            found += [item["ap50"], item["ap50_95"]]
    return found


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_candidate_without_a_tenth_of_its_true_positives_is_worse(
    detections: list[Image], protocol: str
) -> None:
    baseline = comparable(evaluator_of(detections, protocol))
    candidate = comparable(evaluator_of(_without_true_positives(detections, 0.10, 1), protocol))
    result = compare_states(baseline, candidate, resamples=300, seed=0)
    for view in ("mapped", "fine"):
        for metric in ("map50", "map50_95"):
            estimate_ = getattr(result.views[view], metric)
            assert estimate_.verdict == WORSE, (view, metric, estimate_)
            assert estimate_.low is not None and estimate_.high is not None
            assert estimate_.low <= estimate_.delta <= estimate_.high < 0
    assert result.images == 400 and result.resamples == 300 and result.protocol == protocol


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_the_same_checkpoint_twice_gives_zero(detections: list[Image], protocol: str) -> None:
    first = comparable(evaluator_of(detections, protocol))
    second = comparable(evaluator_of(detections, protocol))  # a second, identical run
    result = compare_states(first, second, resamples=200, seed=3).to_dict()
    for item in _all_estimates(result):
        assert item["delta"] == 0.0 and item["ci"] == [0.0, 0.0], item
        assert item["verdict"] == NO_DIFFERENCE
        assert item["baseline"] == item["candidate"]


def test_values_are_the_jobs_own_metrics(detections: list[Image]) -> None:
    evaluator = evaluator_of(detections)
    reduced = evaluator_of(_without_true_positives(detections, 0.3, 2))
    result = compare_states(comparable(evaluator), comparable(reduced), resamples=20)
    for source, side in ((evaluator, "baseline"), (reduced, "candidate")):
        computed = source.compute()
        assert computed.mapped is not None
        mapped = result.views["mapped"]
        assert getattr(mapped.map50, side) == pytest.approx(computed.mapped.map50, abs=1e-12)
        assert getattr(mapped.map50_95, side) == pytest.approx(computed.mapped.map50_95, abs=1e-12)
        assert getattr(result.views["fine"].map50_95, side) == pytest.approx(computed.map50_95, abs=1e-12)
        per_class = {item.id: item for item in result.views["fine"].per_class}
        assert sorted(per_class) == computed.classes.tolist()
        for index, class_id in enumerate(computed.classes):
            assert getattr(per_class[int(class_id)].ap50, side) == pytest.approx(
                computed.ap50[index], abs=1e-12
            )


def test_seeded_reproducible_and_independent_of_threads(detections: list[Image]) -> None:
    baseline = comparable(evaluator_of(detections))
    candidate = comparable(evaluator_of(_without_true_positives(detections, 0.05, 3)))
    first = compare_states(baseline, candidate, resamples=120, seed=7, threads=1).to_dict()
    again = compare_states(baseline, candidate, resamples=120, seed=7, threads=2).to_dict()
    other = compare_states(baseline, candidate, resamples=120, seed=8).to_dict()
    assert first == again
    assert first["mapped"]["map50_95"]["ci"] != other["mapped"]["map50_95"]["ci"]
    assert first["mapped"]["map50_95"]["delta"] == other["mapped"]["map50_95"]["delta"]


def test_swapping_the_jobs_mirrors_the_interval(detections: list[Image]) -> None:
    baseline = comparable(evaluator_of(detections))
    candidate = comparable(evaluator_of(_without_true_positives(detections, 0.05, 4)))
    forward = compare_states(baseline, candidate, resamples=150, seed=1).views["mapped"].map50_95
    backward = compare_states(candidate, baseline, resamples=150, seed=1).views["mapped"].map50_95
    assert backward.delta == pytest.approx(-forward.delta, abs=1e-15)
    assert backward.low == pytest.approx(-forward.high, abs=1e-12)
    assert backward.high == pytest.approx(-forward.low, abs=1e-12)
    assert {forward.verdict, backward.verdict} == {WORSE, BETTER}


def test_images_pair_by_key_not_by_position(detections: list[Image]) -> None:
    """The candidate validated its images in another order: the comparison is the same."""
    images = untied(detections[:150])  # tie order would depend on the processing order: none here
    keys = [f"dir/{i:04d}.jpg" for i in range(len(images))]
    order = np.random.default_rng(5).permutation(len(images))
    reduced = _without_true_positives(images, 0.1, 6)
    in_order = compare_states(
        comparable(evaluator_of(images), keys), comparable(evaluator_of(reduced), keys), resamples=60
    )
    shuffled = compare_states(
        comparable(evaluator_of(images), keys),
        comparable(evaluator_of([reduced[i] for i in order]), [keys[i] for i in order]),
        resamples=60,
    )
    assert in_order.to_dict() == shuffled.to_dict()


def test_refusals(detections: list[Image]) -> None:
    images = detections[:40]
    base = comparable(evaluator_of(images))
    with pytest.raises(ComparisonError) as error:
        compare_states(base, comparable(evaluator_of(images[:39])), resamples=5)
    assert error.value.code == "comparison_images_differ"
    renamed = comparable(evaluator_of(images), [f"other_{i}.jpg" for i in range(40)])
    with pytest.raises(ComparisonError, match="only in the baseline") as error:
        compare_states(base, renamed, resamples=5)
    assert error.value.code == "comparison_images_differ"
    with pytest.raises(ComparisonError) as error:
        compare_states(base, comparable(evaluator_of(images, "coco")), resamples=5)
    assert error.value.code == "comparison_protocol_differs"
    relabelled = [(b, s, c, g, (gc + 1) % 17) for b, s, c, g, gc in images]
    with pytest.raises(ComparisonError) as error:
        compare_states(base, comparable(evaluator_of(relabelled)), resamples=5)
    assert error.value.code == "comparison_labels_differ"
    table = default_class_table()
    other_table = ClassTable(tuple(f"x{i}" for i in range(17)), table.mapped_names, table.fine_to_mapped)
    with pytest.raises(ComparisonError) as error:
        compare_states(base, replace(base, class_table=other_table), resamples=5)
    assert error.value.code == "comparison_classes_differ"
    with pytest.raises(ComparisonError) as error:
        compare_states(base, replace(base, image_keys=base.image_keys[:-1]), resamples=5)
    assert error.value.code == "comparison_state_invalid"
    with pytest.raises(ValueError, match="resamples"):
        compare_states(base, base, resamples=0)
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="confidence"):
            compare_states(base, base, resamples=5, confidence=confidence)


def test_a_rare_class_counts_the_resamples_that_hold_it(detections: list[Image]) -> None:
    """A class with ground truth in one image is absent from about a third of the resamples: its interval
    uses the others, and says how many."""
    images = [(b, s, c, g, np.where(gc == 16, 15, gc)) for b, s, c, g, gc in detections[:200]]
    lonely = next(i for i, image in enumerate(images) if len(image[4]))
    boxes, scores, classes, gt, gt_classes = images[lonely]
    images[lonely] = (boxes, scores, classes, gt, np.where(np.arange(len(gt_classes)) == 0, 16, gt_classes))
    state = comparable(evaluator_of(images))
    result = compare_states(state, state, resamples=300, seed=2)
    rare = next(item for item in result.views["fine"].per_class if item.id == 16)
    assert 150 < rare.ap50.resamples < 250
    assert result.views["fine"].map50.resamples == 300


def test_duplicate_keys_pair_in_order(detections: list[Image]) -> None:
    """Uploads may hold the same image twice (same content hash): the k-th copies pair."""
    images = detections[:20] + detections[:2]
    keys = [f"sha256:{i}" for i in range(20)] + ["sha256:0", "sha256:1"]
    state = comparable(evaluator_of(images), keys)
    result = compare_states(state, state, resamples=30)
    assert result.images == 22 and result.views["mapped"].map50.delta == 0.0


def test_compared_states_are_not_modified(detections: list[Image]) -> None:
    base = comparable(evaluator_of(detections[:50]))
    frozen = {key: np.array(value, copy=True) for key, value in base.state.items()}
    compare_states(base, base, resamples=10)
    assert all(np.array_equal(frozen[key], base.state[key]) for key in frozen)


# -------------------------------------------------------------------------------------------- intervals
def test_interval_methods_on_known_replicates() -> None:
    replicates = np.arange(1, 101, dtype=np.float64)  # quantiles 2.5% and 97.5%: 3.475, 97.525
    low, high = interval(replicates, 50.0, 0.95, "percentile")
    assert (low, high) == pytest.approx((3.475, 97.525))
    low, high = interval(replicates, 40.0, 0.95, "basic")
    assert (low, high) == pytest.approx((80.0 - 97.525, 80.0 - 3.475))
    low, high = interval(replicates, 50.5, 0.95, "bc")  # the point is the median: no bias correction
    assert (low, high) == pytest.approx((3.475, 97.525))
    low, high = interval(replicates, 30.0, 0.95, "bc")  # most replicates above the point: shifted down
    assert low < 3.475 and high < 97.525
    assert interval(np.full(10, np.nan), 0.0, 0.95) == (None, None)
    with pytest.raises(ValueError, match="method"):
        interval(replicates, 0.0, 0.95, "studentized")  # type: ignore[arg-type]


def test_verdicts_and_estimates() -> None:
    assert verdict(0.01, 0.2) == BETTER and verdict(-0.2, -0.01) == WORSE
    assert verdict(-0.1, 0.1) == verdict(0.0, 0.0) == verdict(None, None) == NO_DIFFERENCE
    assert verdict(0.0, 0.1) == NO_DIFFERENCE  # an interval touching 0 includes it
    values = np.array([np.nan, 0.1, 0.2, 0.3, np.nan])
    result = estimate(0.5, 0.7, values, 0.5)
    assert result.delta == pytest.approx(0.2) and result.resamples == 3
    assert result.to_dict()["ci"] == pytest.approx([0.15, 0.25])
    assert result.verdict == BETTER


def test_comparable_state_protocol_object(detections: list[Image]) -> None:
    state = comparable(evaluator_of(detections[:5], "coco"))
    assert isinstance(state, ComparableState) and state.protocol_object().name == "coco"
