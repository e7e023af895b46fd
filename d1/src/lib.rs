//! Bindery's D1 (serverless SQLite). Not implemented yet: see the project's issues.
