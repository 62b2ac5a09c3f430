"""Safety caps on dataset input, applied before the expensive step they guard (no imports: the CLI reads
the defaults while building its parser).

==============================  ===============  ==========================================================
cap                             value            a real dataset
==============================  ===============  ==========================================================
``DEFAULT_MAX_IMAGE_PIXELS``    40 M pixels      phone photos 12-24 MP, DSLRs up to ~45 MP; a 48 KB PNG can
                                                 declare 400 MP (a decompression bomb). Overridable per call
``MAX_DATA_YAML_BYTES``         64 KiB           ~1 KB; 1000 class names of 30 characters: ~35 KB
``MAX_DATA_YAML_DEPTH``         16 levels        2 (``names: {0: a}``)
``MAX_ECHO_CHARS``              200 characters   what an error message quotes of a value from a dataset file
==============================  ===============  ==========================================================

``data.yaml`` may not use YAML aliases at all (``*name``): a 442-byte file of nested aliases expands to
hundreds of millions of nodes (a "billion laughs"), and no real dataset file needs them.
"""

from __future__ import annotations

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
MAX_DATA_YAML_BYTES = 64 * 1024
MAX_DATA_YAML_DEPTH = 16
MAX_ECHO_CHARS = 200


def shorten(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (marked, with the full length) for an error message."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
