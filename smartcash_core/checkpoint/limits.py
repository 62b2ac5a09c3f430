"""Safety caps applied to every checkpoint before anything is allocated or built.

A checkpoint is untrusted input: its metadata decides how much memory the model takes, and its container
(a safetensors header, a zip archive, a pickle) can declare sizes it does not have. These caps bound the
work done for a file before it is refused. Each one is far above what a real YOLOv5 checkpoint needs:

==============================  ===============  ==========================================================
cap                             value            a real checkpoint
==============================  ===============  ==========================================================
``MAX_PARAMS``                  200 M            yolov5x 86.7 M, yolov5x6 140.7 M (``max_params=`` overrides)
``IMGSZ_RANGE``                 32 .. 4096       multiples of the stride (32); YOLOv5 trains at 640 or 1280
``MAX_CLASSES``                 1000             17 (SmartCash), 80 (COCO)
``MULTIPLE_RANGE``              (0, 2.0]         depth 0.33 .. 1.33, width 0.25 .. 1.25 (yolov5n .. yolov5x)
``MAX_LAYERS``                  64 rows          25 (P5 configs), 34 (P6)
``MAX_REPEATS``                 32 per row       9 before the depth multiple
``MAX_CHANNELS``                4096 per arg     1024 before the width multiple
``MAX_KERNEL``                  15               1, 3, 5, 6
``MAX_DETECT_LEVELS``           4                3 (P3-P5), 4 (P6)
``MAX_ANCHORS_PER_LEVEL``       10               3
``MAX_HEADER_BYTES``            4 MiB            73 KB for yolov5x (tensor table + metadata JSON)
``MAX_PICKLE_BYTES``            16 MiB           90 KB (stripped yolov5n) .. ~1 MB (yolov5x with optimizer)
``MAX_PICKLE_OPS``              2 M opcodes      ~25 k (stripped yolov5n)
``MAX_MODULE_DEPTH``            32               6 (DetectionModel > Sequential > C3 > Sequential > ...)
``MAX_MODULES``                 100 k            ~600 (yolov5x)
``MAX_ARCHIVE_MEMBERS``         100 k            ~360 (yolov5n) .. ~2 k (yolov5x mid-training)
``MAX_CENTRAL_DIRECTORY_BYTES`` 16 MiB           ~30 KB .. ~200 KB
``MAX_COMPRESSION_RATIO``       100              1 (torch.save stores members uncompressed)
==============================  ===============  ==========================================================

Storages of a ``.pt`` are read only for the tensors the model needs, after their shapes matched the model
built from the checked architecture, so the bytes read are bounded by the model's own size.
"""

from __future__ import annotations

__all__ = [
    "IMGSZ_RANGE",
    "MAX_ANCHORS_PER_LEVEL",
    "MAX_ANCHOR_PIXELS",
    "MAX_ARCHIVE_MEMBERS",
    "MAX_CENTRAL_DIRECTORY_BYTES",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_COMPRESSION_RATIO",
    "MAX_DETECT_LEVELS",
    "MAX_HEADER_BYTES",
    "MAX_KERNEL",
    "MAX_LAYERS",
    "MAX_MODULES",
    "MAX_MODULE_DEPTH",
    "MAX_PARAMS",
    "MAX_PICKLE_BYTES",
    "MAX_PICKLE_OPS",
    "MAX_REPEATS",
    "MAX_TENSOR_DIMS",
    "MAX_UPSAMPLE",
    "MULTIPLE_RANGE",
    "RATIO_CHECK_MIN_BYTES",
]

MiB = 1 << 20

# Architecture (native metadata and the ``yaml`` pickled in a YOLOv5 .pt).
MAX_PARAMS = 200_000_000
IMGSZ_RANGE = (32, 4096)
MAX_CLASSES = 1000
MULTIPLE_RANGE = (0.0, 2.0)  # exclusive lower bound, inclusive upper bound
MAX_LAYERS = 64
MAX_REPEATS = 32
MAX_CHANNELS = 4096
MAX_KERNEL = 15
MAX_UPSAMPLE = 8
MAX_DETECT_LEVELS = 4
MAX_ANCHORS_PER_LEVEL = 10
MAX_ANCHOR_PIXELS = 10_000.0

# Containers.
MAX_HEADER_BYTES = 4 * MiB  # a JSON document of this size parses into ~100 MB of objects at worst
MAX_TENSOR_DIMS = 8
MAX_PICKLE_BYTES = 16 * MiB
MAX_PICKLE_OPS = 2_000_000
MAX_MODULE_DEPTH = 32
MAX_MODULES = 100_000
MAX_ARCHIVE_MEMBERS = 100_000
MAX_CENTRAL_DIRECTORY_BYTES = 16 * MiB
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1 * MiB  # tiny members (all-zero buffers) may compress better: their size is harmless
