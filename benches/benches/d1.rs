//! Criterion benchmarks for d1. Filled in by its issue.

fn main() {}
