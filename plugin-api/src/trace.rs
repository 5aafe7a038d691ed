//! The memory-trace file format, shared by the `memtrace` plugin (writer) and the
//! `blockscope memtrace` command (reader) so the two cannot drift apart.
//!
//! A file is a 16-byte header — the magic `BSMTRACE`, then the format version (u32) and
//! the record size (u32), little-endian — followed by fixed-size records in the order each
//! thread made them (threads' records are interleaved in chunks).

/// File magic.
pub const MAGIC: &[u8; 8] = b"BSMTRACE";
/// Format version.
pub const VERSION: u32 = 1;
/// Bytes per record.
pub const RECORD_BYTES: usize = 32;
/// Header bytes.
pub const HEADER_BYTES: usize = 16;

/// Access kind: load.
pub const KIND_LOAD: u8 = 1;
/// Access kind: store.
pub const KIND_STORE: u8 = 2;
/// Access kind: atomic read-modify-write.
pub const KIND_RMW: u8 = 3;

/// One memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Address of the instruction.
    pub pc: u64,
    /// Accessed address.
    pub addr: u64,
    /// Value loaded or stored (zero-extended; the old value for RMW).
    pub value: u64,
    /// Size in bytes.
    pub size: u8,
    /// `KIND_*`.
    pub kind: u8,
    /// Thread (vCPU) index.
    pub thread: u32,
}

/// The file header.
pub fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(RECORD_BYTES as u32).to_le_bytes());
    h
}

/// Check a header; returns an error message if it is not a trace this code reads.
pub fn check_header(h: &[u8]) -> Result<(), String> {
    if h.len() < HEADER_BYTES || &h[..8] != MAGIC {
        return Err("not a blockscope memory trace (bad magic)".into());
    }
    let v = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    let r = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
    if v != VERSION || r as usize != RECORD_BYTES {
        return Err(format!("unsupported trace version {v} (record size {r})"));
    }
    Ok(())
}

impl Record {
    /// Encode.
    pub fn to_bytes(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..8].copy_from_slice(&self.pc.to_le_bytes());
        b[8..16].copy_from_slice(&self.addr.to_le_bytes());
        b[16..24].copy_from_slice(&self.value.to_le_bytes());
        b[24] = self.size;
        b[25] = self.kind;
        b[28..32].copy_from_slice(&self.thread.to_le_bytes());
        b
    }
    /// Decode.
    pub fn from_bytes(b: &[u8; RECORD_BYTES]) -> Record {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Record {
            pc: u64_at(0),
            addr: u64_at(8),
            value: u64_at(16),
            size: b[24],
            kind: b[25],
            thread: u32::from_le_bytes(b[28..32].try_into().expect("4 bytes")),
        }
    }
}
