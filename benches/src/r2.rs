//! Quick figures for r2. Filled in by its issue.

/// Prints this area's figures.
pub fn run() {
    println!("# r2: no figures yet");
}
