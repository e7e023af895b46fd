//! Durable Objects conformance: one function per documented behaviour. Filled in by the Durable Objects issue.
