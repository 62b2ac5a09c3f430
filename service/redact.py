"""Error messages name paths relative to their root, never the server's absolute paths.

The library names files by their full path (it has no notion of a root); the service knows where its roots
are and rewrites each root's absolute path, as configured and as resolved (symlinks), out of every message
it sends: ``/srv/data/banknotes/data.yaml`` becomes ``banknotes/data.yaml``, the root itself ``<data root>``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class PathRedactor:
    def __init__(self, roots: Mapping[str, Path]) -> None:
        """``roots``: label -> directory, e.g. ``{"data root": settings.data_root}``."""
        prefixes: dict[str, str] = {}
        for label, root in roots.items():
            for form in (root.absolute(), root.resolve()):
                text = str(form).rstrip(os.sep)
                if len(text) > 1:  # never rewrite "/" itself
                    prefixes.setdefault(text, label)
        # longest first: a root nested in another (state dir under the data root) wins
        self._patterns = [
            (re.compile(re.escape(prefix) + r"(?:" + re.escape(os.sep) + r"|(?![\w-]|\.\w))"), label)
            for prefix, label in sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
        ]

    def __call__(self, text: str) -> str:
        for pattern, label in self._patterns:
            text = pattern.sub(lambda match, label=label: _replacement(match.group(0), label), text)
        return text


def redact_reports(result: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    """A job result with its paths and free-text reports redacted: ``model`` (the checkpoint's path),
    ``dataset.skipped`` (a reason may quote an exception that names the file by its full path) and
    ``warnings``. Metrics and per-image rows hold names relative to the dataset and are left alone."""
    if isinstance(result.get("model"), dict):
        result["model"] = _redact_strings(result["model"], redact)
    dataset = result.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("skipped"), list):
        dataset["skipped"] = [_redact_strings(entry, redact) for entry in dataset["skipped"]]
    if isinstance(result.get("warnings"), list):
        result["warnings"] = [_redact_strings(entry, redact) for entry in result["warnings"]]
    return result


def _redact_strings(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_strings(item, redact) for key, item in value.items()}
    return value


def _replacement(found: str, label: str) -> str:
    return "" if found.endswith(os.sep) else f"<{label}>"


def no_redaction(text: str) -> str:
    return text
