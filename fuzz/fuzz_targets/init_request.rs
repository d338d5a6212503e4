#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crypto_conformance::fuzz::init_request(data));
