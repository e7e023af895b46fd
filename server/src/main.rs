//! The `bindery` binary. The server lands with its issue; until then it only says so.

fn main() {
    eprintln!("bindery: the server is not implemented yet; see README.md for what runs today");
    std::process::exit(2);
}
