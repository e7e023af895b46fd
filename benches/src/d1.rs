//! Quick figures for d1. Filled in by its issue.

/// Prints this area's figures.
pub fn run() {
    println!("# d1: no figures yet");
}
