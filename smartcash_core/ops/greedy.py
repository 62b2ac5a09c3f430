"""Exact greedy NMS in numpy: torchvision's CPU kernel, decision for decision, without its O(n x kept) loop.

torchvision walks the candidates in score order and lets every kept box suppress each later candidate whose
float32 IoU, ``inter / (area_i + area_j - inter)``, exceeds the threshold (compared in double). The result
depends only on that sequence of decisions, so it can be computed for a block of candidates at once:

1. the pairs that could suppress each other are found (a sweep over x: boxes whose x extents do not overlap
   have zero intersection in float32 too, and YOLOv5's 7680 px class offsets give every class its own x
   range, so boxes of different classes are never paired; with a coordinate that is not finite, or a tiny
   block, every pair is taken),
2. their IoUs are computed in one vectorised pass, torchvision's float32 formula operation for operation,
3. the greedy order is resolved: boxes kept in earlier blocks suppress outright, the block's own candidates
   in rounds that follow chains of suppression,
4. feeding stops once ``limit`` boxes are kept: later candidates can never remove an earlier kept box.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_TABLE_ROWS = 5  # x1, y1, x2, y2, area (float32), one column per box
_ALL_PAIRS_UP_TO = 40  # boxes (kept + block) below which pairing everything beats the sweep's overhead
_SEQUENTIAL_UP_TO = 256  # suppressing pairs below which a plain Python pass beats vectorised rounds
_FEW_BITS = 64  # greedy_few packs each box's suppressions into one 64-bit word


@lru_cache(maxsize=64)
def float32_threshold(iou_thres: float) -> np.float32:
    """The largest float32 ``t <= iou_thres``: for float32 ``v``, ``v > t`` iff ``v > iou_thres`` in double.

    torchvision compares its float32 IoU with the double threshold; numpy would round 0.6 *up* to float32
    (0.60000002) and keep a box whose IoU is exactly float32(0.6), which torchvision suppresses.
    """
    threshold = np.float32(iou_thres)
    if float(threshold) > iou_thres:
        threshold = np.nextafter(threshold, np.float32(-np.inf))
    return threshold


def _box_table(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` float32 xyxy -> ``[5, N]`` (x1, y1, x2, y2, area) with torchvision's float32 area."""
    table = np.empty((_TABLE_ROWS, len(boxes)), dtype=np.float32)
    table[:4] = boxes.T
    np.multiply(table[2] - table[0], table[3] - table[1], out=table[4])
    return table


def _iou_exceeds(first: np.ndarray, second: np.ndarray, threshold: np.float32) -> np.ndarray:
    """Column-wise ``IoU(first[:, k], second[:, k]) > threshold`` for two ``[5, P]`` tables, as torchvision.

    ``first`` holds the higher-scored box of each pair. ``np.maximum``/``np.minimum`` differ from C++'s
    ``std::max``/``std::min`` only when a NaN is involved, and that needs a NaN coordinate or an extent
    ``inf - inf`` (a box with ``x1 == x2 == ±inf``): then that box's area is NaN, so is the IoU, and NaN
    never exceeds the threshold either way.
    """
    # x and y in one go: rows 0-1 are (x1, y1), rows 2-3 (x2, y2); the same float32 operations per value
    extent = np.minimum(first[2:4], second[2:4]) - np.maximum(first[0:2], second[0:2])
    np.maximum(extent, np.float32(0), out=extent)
    inter = extent[0] * extent[1]
    return inter / (first[4] + second[4] - inter) > threshold


def ragged_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``k``, the indices ``starts[k] .. starts[k] + lengths[k] - 1``, flattened.

    Returns ``(owner, index)``: ``owner[p]`` is the ``k`` that produced ``index[p]``.
    """
    owner = np.repeat(np.arange(len(lengths)), lengths)
    shift = starts - (np.cumsum(lengths) - lengths)
    return owner, np.arange(len(owner)) + np.repeat(shift, lengths)


@lru_cache(maxsize=_ALL_PAIRS_UP_TO + 1)
def _all_pairs(count: int) -> tuple[np.ndarray, np.ndarray]:
    earlier, later = np.triu_indices(count, 1)
    return earlier, later


@lru_cache(maxsize=_FEW_BITS + 1)
def _later_than(count: int) -> np.ndarray:
    """``[count, count]`` mask of the pairs ``(i, j)`` with ``i < j``."""
    return np.triu(np.ones((count, count), dtype=bool), 1)


def greedy_few(boxes: np.ndarray, iou_thres: float, limit: int) -> np.ndarray:
    """Greedy NMS of at most 64 ``[N, 4]`` float32 boxes in score order, with the least numpy calls: all
    pairs in one matrix, each row packed into a Python int (bit ``j`` of row ``i``: box ``i`` would suppress
    box ``j > i``), then one plain pass. Kept positions, ascending, at most ``limit``."""
    count = len(boxes)
    if count > _FEW_BITS:
        raise ValueError(f"greedy_few takes at most {_FEW_BITS} boxes, got {count}")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # IEEE NaN/inf, as in C++
        table = _box_table(boxes)
        hits = _iou_exceeds(table[:, :, None], table[:, None, :], float32_threshold(float(iou_thres)))
    rows = np.zeros((count, 8), dtype=np.uint8)
    rows[:, : (count + 7) // 8] = np.packbits(hits & _later_than(count), axis=1, bitorder="little")
    suppressed, kept = 0, []
    for position, suppresses in enumerate(rows.view("<u8").ravel().tolist()):
        if not suppressed >> position & 1:
            kept.append(position)
            if len(kept) == limit:
                break
            suppressed |= suppresses
    return np.asarray(kept, dtype=np.int64)


def pairs_to_compare(
    x1: np.ndarray, x2: np.ndarray, first_new: int, finite: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, ``j >= first_new``, that include every pair of boxes whose x extents
    overlap by a positive width.

    Any other pair has ``min(x2) - max(x1) <= 0``, so torchvision's intersection width is 0 and it cannot
    suppress. Found by a sweep over the boxes sorted by ``x1``: box ``k``'s partners are the later ones whose
    ``x1`` lies in ``[x1_k, x2_k)``, one contiguous run. YOLOv5's class offsets put every class in its own
    x range, so this pairs boxes of the same class only, without looking at classes. Without finite
    coordinates the sweep proves nothing, and for a few boxes it costs more than it saves: then every pair
    is returned.
    """
    count = len(x1)
    if count <= _ALL_PAIRS_UP_TO:
        earlier, later = _all_pairs(count)
        involves_new = later >= first_new
        return earlier[involves_new], later[involves_new]
    if not finite:
        new = np.arange(first_new, count)
        owner, earlier = ragged_ranges(np.zeros(len(new), dtype=np.int64), new)
        return earlier, new[owner]
    by_x1 = np.argsort(x1)  # boxes starting at the same x1 may come in any order: one of them finds the other
    sorted_x1 = x1[by_x1]
    run_end = np.searchsorted(sorted_x1, x2[by_x1], side="left")  # first box starting at or after x2_k
    position = np.arange(count)
    owner, partner = ragged_ranges(position + 1, np.maximum(run_end - position - 1, 0))
    a, b = by_x1[owner], by_x1[partner]
    earlier, later = np.minimum(a, b), np.maximum(a, b)
    involves_new = later >= first_new
    return earlier[involves_new], later[involves_new]


def resolve_after_kept(known: int, count: int, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Greedy outcome for ``count`` new candidates that follow ``known`` kept boxes (indices ``known ..``).

    ``(source, target)``, ``source < target``, are all the pairs where ``source`` would suppress ``target``
    if ``source`` is kept. Kept boxes suppress outright. Then, in rounds: an undecided candidate none of
    whose suppressors is still undecided is kept (a kept suppressor would already have removed it), and
    everything it suppresses is removed. The first undecided candidate always qualifies, so every round
    decides something; the rounds follow chains of suppression, not the candidates one by one. Returns the
    kept new candidates as ``0 .. count - 1`` indices, ascending.
    """
    if not len(source):
        return np.arange(count)
    if len(source) <= _SEQUENTIAL_UP_TO:
        return _resolve_sequentially(known, count, source, target)
    undecided = np.ones(known + count, dtype=bool)
    undecided[:known] = False
    by_kept = source < known
    undecided[target[by_kept]] = False
    source, target = source[~by_kept], target[~by_kept]
    kept = np.zeros(known + count, dtype=bool)
    while True:
        live = undecided[source] & undecided[target]
        source, target = source[live], target[live]
        blocked = np.zeros(known + count, dtype=bool)
        blocked[target] = True
        free = undecided & ~blocked
        kept |= free
        undecided &= ~free
        if not len(source):
            return np.flatnonzero(kept[known:])
        undecided[target[free[source]]] = False


def _resolve_sequentially(known: int, count: int, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:func:`resolve_after_kept` for few pairs: one pass in plain Python over the pairs by source. When a
    source's pairs come up, every pair that could suppress it (from an earlier source) has been seen."""
    by_source = np.argsort(source, kind="stable")
    suppressed = bytearray(known + count)
    for first, second in zip(source[by_source].tolist(), target[by_source].tolist(), strict=True):
        if not suppressed[first]:
            suppressed[second] = 1
    return np.flatnonzero(np.frombuffer(suppressed, dtype=np.uint8)[known:] == 0)


class GreedyNms:
    """Greedy NMS fed with candidates in score order, block by block, until ``limit`` boxes are kept.

    ``kept`` lists the positions (0-based, in feeding order) of the kept candidates, ascending.
    """

    def __init__(self, iou_thres: float, limit: int) -> None:
        self.threshold = float32_threshold(float(iou_thres))
        self.limit = limit
        self.kept: list[int] = []
        self.fed = 0
        self._kept_table = np.empty((_TABLE_ROWS, 0), dtype=np.float32)
        self._finite = True  # every box fed so far has finite coordinates

    @property
    def full(self) -> bool:
        return len(self.kept) >= self.limit

    def feed(self, boxes: np.ndarray) -> None:
        """The next candidates in score order, ``[B, 4]`` float32 xyxy (class offsets already added)."""
        if not self.full and len(boxes):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # IEEE NaN/inf, as in C++
                self._feed(boxes)
        self.fed += len(boxes)

    def _feed(self, boxes: np.ndarray) -> None:
        table = _box_table(boxes)
        self._finite = self._finite and bool(np.isfinite(table[:4]).all())
        known = self._kept_table.shape[1]
        both = np.concatenate((self._kept_table, table), axis=1) if known else table  # kept ones come first
        earlier, later = pairs_to_compare(both[0], both[2], known, self._finite)
        pair_first = np.take(both, earlier, axis=1)  # np.take: fancy indexing on axis 1 is much slower
        pair_second = np.take(both, later, axis=1)
        hits = _iou_exceeds(pair_first, pair_second, self.threshold)
        survivors = resolve_after_kept(known, len(boxes), earlier[hits], later[hits])
        survivors = survivors[: self.limit - len(self.kept)]
        self.kept.extend((survivors + self.fed).tolist())
        self._kept_table = np.concatenate((self._kept_table, np.take(table, survivors, axis=1)), axis=1)
