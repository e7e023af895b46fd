//! Bindery's Queues. Not implemented yet: see the project's issues.
