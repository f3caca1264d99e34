#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parley_fuzz::client_frame(data));
