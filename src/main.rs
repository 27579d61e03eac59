//! `ruleop` command line: parses arguments and dispatches to the library.
fn main() {
    println!("ruleop");
}
