//! Criterion benchmarks for vectorize. Filled in by its issue.

fn main() {}
