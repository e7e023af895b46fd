//! Criterion benchmarks for queues. Filled in by its issue.

fn main() {}
