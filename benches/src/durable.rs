//! Quick figures for durable. Filled in by its issue.

/// Prints this area's figures.
pub fn run() {
    println!("# durable: no figures yet");
}
