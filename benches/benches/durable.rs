//! Criterion benchmarks for durable. Filled in by its issue.

fn main() {}
