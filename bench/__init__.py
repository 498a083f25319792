"""Benchmarks for the project's targets (bench/targets.py); `python -m bench` runs them all.

Each row of the targets table (the one docs/benchmarks.md opens with) has a module here that builds the
stack it needs from devstack (the same builders the demo and the tests use), measures, and returns a
`RowResult`. `__main__` runs the rows, prints each figure as it comes, and writes docs/benchmarks.md and
the PNG plots beside it. Nothing is asserted: the targets are reported as met or not met.
"""
