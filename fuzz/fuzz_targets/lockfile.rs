//! `models.lock`: any text parses or gives an error.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mdl::lock::Lockfile::parse(std::path::Path::new("models.lock"), text);
    }
});
