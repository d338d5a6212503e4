#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crypto_conformance::fuzz::gateway_forwarding(data));
