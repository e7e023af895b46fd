//! Bindery's Vectorize. Not implemented yet: see the project's issues.
