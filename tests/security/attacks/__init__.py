"""The attacks of issue 11, one function each, run against a real server by ``tests/bench/bench_attacks.py``.

Adding one: write a function ``(target: Target) -> Outcome`` in the module of its kind (``files``,
``requests``, ``jobs``), decorate it with ``@attack(item, name, expect)``; ``catalog.ATTACKS`` lists it.
"""
