"""Benchmarks (`make bench`): measured figures written as JSON under .data/bench/."""
