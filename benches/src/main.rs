//! `bindery-benches quick [AREA ...]`: the quick report, one line per figure.
//!
//! Areas: `kv`, `d1`, `r2`, `queues`, `durable`, `vectorize` (all of them when none is named).
//! Every ratio is computed from figures measured in the same run.

mod d1;
mod disk;
mod durable;
mod kv;
mod queues;
mod r2;
mod report;
mod vectorize;

const AREAS: [&str; 6] = ["kv", "d1", "r2", "queues", "durable", "vectorize"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter().map(String::as_str);
    match args.next() {
        Some("quick") => {}
        _ => {
            eprintln!("usage: bindery-benches quick [{}]", AREAS.join("|"));
            std::process::exit(2);
        }
    }
    let mut areas: Vec<&str> = args.collect();
    if areas.is_empty() {
        areas = AREAS.to_vec();
    }
    for area in areas {
        match area {
            "kv" => kv::run(),
            "d1" => d1::run(),
            "r2" => r2::run(),
            "queues" => queues::run(),
            "durable" => durable::run(),
            "vectorize" => vectorize::run(),
            other => {
                eprintln!("unknown area {other:?}; known: {}", AREAS.join(", "));
                std::process::exit(2);
            }
        }
    }
}
