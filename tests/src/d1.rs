//! D1 conformance: one function per documented behaviour. Filled in by the D1 issue.
