"""The whole stack: one builder and one operator launcher for the demo, the benchmarks and the tests."""
