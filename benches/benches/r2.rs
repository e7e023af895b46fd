//! Criterion benchmarks for r2. Filled in by its issue.

fn main() {}
