//! Prints `vectors/protocol-v2.json`:
//! `cargo run -p crypto-conformance --bin gen-v2-vectors > vectors/protocol-v2.json`.

fn main() {
    let v = crypto_conformance::v2_vectors::generate();
    println!(
        "{}",
        serde_json::to_string_pretty(&v).expect("the vectors serialise")
    );
}
