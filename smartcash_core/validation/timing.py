"""Stage timings of a pass: wall seconds per stage, reported as milliseconds per image."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from smartcash_core.validation.params import SPEED_STAGES

# The order rank reports list stages in: the order the pass has always reported them (``loss`` before
# ``nms``: it was computed there before it became an accumulator updated after NMS), whatever order the
# timings were first recorded in.
TIMED_STAGES = ("loader_wait", "decode", "preprocess", "inference", "loss", "nms", "metrics")


@contextmanager
def timed(seconds: dict[str, float], stage: str, cpu: dict[str, float] | None = None) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[stage]`` and, given ``cpu``, the calling thread's CPU
    time to ``cpu[stage]`` (threads the block starts, such as torch's intra-op pool, are not counted)."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started
        if cpu is not None:
            cpu[stage] = cpu.get(stage, 0.0) + time.thread_time() - cpu_started


def speed_ms_per_image(stage_seconds: Mapping[str, float], images: int) -> dict[str, float]:
    """Milliseconds per image for each reported stage; ``loader_wait``: time the forward pass waited on
    decoding; ``loss`` only when it was timed."""
    stages = (*SPEED_STAGES, "loader_wait", *(["loss"] if "loss" in stage_seconds else []))
    return {stage: 1000 * stage_seconds.get(stage, 0.0) / images for stage in stages}


def rank_speed(stage_seconds: Mapping[str, float], images: int) -> dict[str, float]:
    """Milliseconds per image of each timed stage on one rank (none when it validated no image)."""
    if not images:
        return {}
    known = [stage for stage in TIMED_STAGES if stage in stage_seconds]
    others = [stage for stage in stage_seconds if stage not in TIMED_STAGES]
    return {stage: 1000 * stage_seconds[stage] / images for stage in (*known, *others)}
