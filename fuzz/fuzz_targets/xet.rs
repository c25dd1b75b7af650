//! Xet: a CAS's reconstruction answer (terms, fetch_info, multi-range
//! xorbs, every hash, range and URL checked, terms matched to ranges), a
//! term log and a chunk index from `models/.mdl/xet/`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mdl::fetch::xet::fuzz_xet(data);
});
