"""Benchmark harness and reports."""
