//! Quick figures for vectorize. Filled in by its issue.

/// Prints this area's figures.
pub fn run() {
    println!("# vectorize: no figures yet");
}
