"""Every registered attack, in issue order (stable: within an item, in the order the modules define them),
those marked ``last`` (the check of what was left under ``$HOME`` and the temp dir) at the end."""

from __future__ import annotations

import re

from tests.security.attacks import files, jobs, requests  # noqa: F401 (importing registers the attacks)
from tests.security.attacks.registry import ATTACKS as _REGISTERED
from tests.security.attacks.registry import Attack


def _issue_order(item: Attack) -> tuple[bool, int, str]:
    number, suffix = re.fullmatch(r"(\d+)(\w*)", item.item).groups()  # type: ignore[union-attr]
    return item.last, int(number), suffix


ATTACKS: list[Attack] = sorted(_REGISTERED, key=_issue_order)
