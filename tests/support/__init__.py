"""Helpers the tests (and benchmarks) share; never shipped with the package."""
