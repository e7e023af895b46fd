//! Bindery's Durable Objects. Not implemented yet: see the project's issues.
