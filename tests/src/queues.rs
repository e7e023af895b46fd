//! Queues conformance: one function per documented behaviour. Filled in by the Queues issue.
