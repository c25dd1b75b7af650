//! The spec's limits, and the bounds on what the Hub or the CAS may send.

/// The spec's limits: a xorb holds at most 64 MiB and 8 Ki chunks, a chunk
/// at most 128 KiB (xet-core's maximum chunk); anything past them is refused
/// before it is allocated.
pub(crate) const MAX_XORB_BYTES: u64 = 64 << 20;
pub(crate) const MAX_XORB_CHUNKS: u32 = 8 * 1024;
pub(crate) const MAX_CHUNK: usize = 128 << 10;
/// A reconstruction's JSON (a file of 1 TiB has ~16 M chunks but far fewer terms).
pub(crate) const MAX_ANSWER: usize = 64 << 20;
/// Bytes of a range written before they are sent on to disk.
pub(crate) const WRITEBACK_BYTES: u64 = 8 << 20;
