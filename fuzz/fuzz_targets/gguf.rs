//! GGUF headers: magic, version, counts, metadata of every type (arrays
//! nested), the tensor table, alignment, and each tensor's extent checked
//! against the file; then the whole structure check from a file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mdl::verify::formats::gguf::parse(data, data.len() as u64);
    let _ = mdl::verify::fuzz_weight_file_named(data, "model.gguf");
});
