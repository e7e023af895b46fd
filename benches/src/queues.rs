//! Quick figures for queues. Filled in by its issue.

/// Prints this area's figures.
pub fn run() {
    println!("# queues: no figures yet");
}
