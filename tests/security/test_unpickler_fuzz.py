"""Random mutations of the reference pickle: every one imports or raises a typed error, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.security.hostile import ROOT


def test_mutated_pickles_are_imported_or_refused_never_crash() -> None:
    done = subprocess.run(
        [sys.executable, "tests/security/fuzz_unpickler.py", "--count", "150", "--seed", "20261201"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["crashes"] == [], report["crashes"][:3]
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == 150
    assert outcomes.get("CheckpointError", 0) > 20 and outcomes.get("UnsafePickleError", 0) > 5, outcomes
    # Each mutant is a 3.8 MB file with 3.6 MB of weights; the whole run stays far below any runaway.
    assert report["grown_mb"] < 300, report
