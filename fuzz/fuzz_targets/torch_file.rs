//! `torch.save` files (zip and legacy) through the whole reader: detection,
//! the zip directory, the pickle, storages and views checked against the file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mdl::verify::fuzz_weight_file(data);
});
