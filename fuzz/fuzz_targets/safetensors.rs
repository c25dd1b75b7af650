//! safetensors headers: format detection, the largest-tensor scan the memory
//! budget uses, and the structure check.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mdl::verify::fuzz_weight_file_named(data, "model.safetensors");
});
