"""What an attack is, what it attacks, and the list the bench runs.

An attack is a function that does one hostile thing to the server (``Target``) and returns an ``Outcome``:
what the server answered (``"401"``, ``"job failed: bad_dataset"``, ...) and how long the answer took. The
bench measures everything else around it (``/live`` latency, peak RSS growth). ``expect`` is a regular
expression the outcome must match for the attack to count as handled (a clean refusal, a skipped item).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.service.servers import HEADERS, ServerProcess


@dataclass
class Outcome:
    answer: str  # what the server answered, short: "413", "job succeeded", "exit 2: ... in use ..."
    seconds: float  # time to the answer (from the first byte sent)


@dataclass
class Target:
    """The server under attack and the files it serves (prepared by ``inputs.prepare``)."""

    server: ServerProcess
    root: Path  # temporary folder: checkpoints/, data/, home/, tmp/, state/
    env: dict[str, str]  # the server's SMARTCASH_* settings
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=HEADERS, timeout=120.0, **kwargs)

    def setting(self, name: str) -> str:
        return self.env[f"SMARTCASH_{name.upper()}"]


AttackFunction = Callable[[Target], Outcome]


@dataclass(frozen=True)
class Attack:
    item: str  # issue 11 item, e.g. "4" or "12b"
    name: str
    expect: str  # regular expression over Outcome.answer
    run: AttackFunction
    last: bool = False  # runs after all others (it checks what they left behind)

    def handled(self, outcome: Outcome) -> bool:
        return re.search(self.expect, outcome.answer) is not None


ATTACKS: list[Attack] = []


Register = Callable[[AttackFunction], AttackFunction]


def attack(item: str, name: str, expect: str, last: bool = False) -> Register:
    """Register an attack (in the order the modules define them)."""

    def register(function: AttackFunction) -> AttackFunction:
        ATTACKS.append(Attack(item, name, expect, function, last))
        return function

    return register


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as took: ...``; then ``took[0]`` is the block's wall time in seconds."""
    took: list[float] = []
    started = time.perf_counter()
    try:
        yield took
    finally:
        took.append(time.perf_counter() - started)


def error_code(response: httpx.Response) -> str:
    """``"<status> <error code>"`` of an error body, or just the status."""
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)
