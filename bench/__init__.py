"""The performance harness: `python3 -m bench` (see docs/performance.md).

It measures the machine's ceilings (plain code: consume, validate, COPY) and the engine's
real processes (`serviceorders consume / project / api`) side by side in the same run, and
prints a table with each figure, its ratio to the ceiling, the target and the verdict.
"""
