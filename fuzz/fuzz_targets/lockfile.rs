//! `models.lock`: any text parses or gives an error, and what parses holds
//! only what validation admits (`lock::validate::fuzz_check`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        mdl::lock::validate::fuzz_check(text);
    }
});
