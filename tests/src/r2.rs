//! R2 conformance: one function per documented behaviour. Filled in by the R2 issue.
