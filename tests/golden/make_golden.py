"""Write the golden files: ``python -m tests.golden.make_golden`` (from the repository root).

Run it only when a change of results is intended, and say why in the commit: the golden test exists to
prove that restructurings leave every number where it was.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from tests.golden.cases import CASES, GOLDEN
from tests.golden.fingerprint import machine_fingerprint


def main() -> int:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        result, state = case()
        (GOLDEN / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        np.savez_compressed(GOLDEN / f"{name}_state.npz", **state)
        print(f"wrote {name}: {len(result['per_image'])} images, {len(state)} state arrays")
    (GOLDEN / "machine.json").write_text(json.dumps(machine_fingerprint(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
