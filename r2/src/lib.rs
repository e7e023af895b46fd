//! Bindery's R2 object storage. Not implemented yet: see the project's issues.
