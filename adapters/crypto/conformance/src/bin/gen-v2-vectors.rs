//! Prints `vectors/protocol-v2.json`, or with `exchanges` `vectors/exchanges.json`:
//!
//! ```text
//! cargo run -p crypto-conformance --bin gen-v2-vectors > vectors/protocol-v2.json
//! cargo run -p crypto-conformance --bin gen-v2-vectors -- exchanges > vectors/exchanges.json
//! ```

fn main() {
    let v = match std::env::args().nth(1).as_deref() {
        None => crypto_conformance::v2_vectors::generate(),
        Some("exchanges") => crypto_conformance::exchange_vectors::generate(),
        Some(other) => {
            eprintln!("unknown vector file {other:?}: give no argument, or `exchanges`");
            std::process::exit(2);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&v).expect("the vectors serialise")
    );
}
