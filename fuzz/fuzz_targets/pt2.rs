//! torch.export archives: the zip, `archive_format`, the programs' JSON and
//! signature, every weight and constant config and its record's extent.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mdl::verify::formats::pt2::fuzz(data);
});
