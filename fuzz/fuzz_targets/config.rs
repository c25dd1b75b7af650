//! `config.yaml`: any text parses or gives a positioned error.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mdl::config::Config::parse(std::path::Path::new("config.yaml"), text, &[]);
    }
});
