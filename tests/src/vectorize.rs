//! Vectorize conformance: one function per documented behaviour. Filled in by the Vectorize issue.
