"""Benchmark (not a test): rank 0's merge of evaluator states, the generic accumulator merge (rules per
key, image ids checked disjoint) against the evaluator-specific concatenation it replaced, same run.

    .venv/bin/python tests/bench/bench_state_merge.py [--ranks 2] [--images 5000] [--predictions 300]

The states have the evaluator's ``yolo`` keys and dtypes, every image ``--predictions`` predictions and five
ground truths, shards contiguous in processing order as the distributed pass makes them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from smartcash_core.validation.accumulators.base import merge_state_arrays
from smartcash_core.validation.distributed import concat_state_arrays, evaluator_merge_rules

StateArrays = dict[str, np.ndarray]


def rank_state(rng: np.random.Generator, first: int, images: int, predictions: int) -> StateArrays:
    ids = np.arange(first, first + images, dtype=np.int32)
    pred_image = np.repeat(ids, predictions)
    count = pred_image.size
    return {
        "image_ids": ids.astype(np.int64),
        "pred_image": pred_image,
        "pred_score": rng.random(count, dtype=np.float32),
        "pred_class": rng.integers(0, 17, count).astype(np.int32),
        "gt_image": np.repeat(ids, 5),
        "gt_class": rng.integers(0, 17, images * 5).astype(np.int32),
        "fine_hit_bits": rng.integers(0, 1024, count).astype(np.uint16),
        "mapped_hit_bits": rng.integers(0, 1024, count).astype(np.uint16),
        "confusion": rng.integers(0, 50, (18, 18)),
    }


def best_ms(merge: Callable[[], StateArrays], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        merge()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--predictions", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_rank = args.images // args.ranks
    states = [rank_state(rng, rank * per_rank, per_rank, args.predictions) for rank in range(args.ranks)]
    rules = evaluator_merge_rules(states[0])
    generic, concat = merge_state_arrays(states, rules), concat_state_arrays(states)
    assert all(np.array_equal(generic[key], concat[key]) for key in concat)
    old_ms = best_ms(lambda: concat_state_arrays(states), args.repeats)
    new_ms = best_ms(lambda: merge_state_arrays(states, rules), args.repeats)
    print(f"{args.ranks} ranks, {args.images} images, {args.images * args.predictions} predictions")
    print(f"  evaluator concatenation {old_ms:7.1f} ms")
    print(f"  generic rule merge      {new_ms:7.1f} ms   ratio {new_ms / old_ms:.2f}")


if __name__ == "__main__":
    main()
