//! The pickle reader: any bytes give a value or an error, within its budget.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    let _ = mdl::verify::formats::torch::pickle::read(data, &mut pos);
});
