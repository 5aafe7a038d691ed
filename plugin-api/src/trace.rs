//! The memory-trace file format, shared by the `memtrace` plugin (writer) and the
//! `blockscope memtrace` command (reader) so the two cannot drift apart.
//!
//! A file is a 16-byte header — the magic `BSMTRACE`, then the format version (u32) and
//! 0 (u32; version 1 had fixed 32-byte records and put their size here), little-endian —
//! followed by chunks. A chunk holds records of one thread in the order it made them
//! (threads' chunks are interleaved): a 12-byte chunk header (thread u32, record count
//! u32, byte length of the records u32) and the records. A record is compact:
//! - a tag byte: kind (bits 0-1), then in bits 2-4 the size as log2 (0..4 for 1..16
//!   bytes) or 7 when a size byte follows the tag;
//! - the pc minus the previous record's pc, zigzag LEB128;
//! - the address minus the previous record's address, zigzag LEB128;
//! - the value, LEB128.
//!
//! "Previous" starts at 0 in each chunk, so a chunk decodes on its own.

/// File magic.
pub const MAGIC: &[u8; 8] = b"BSMTRACE";
/// Format version.
pub const VERSION: u32 = 2;
/// Header bytes.
pub const HEADER_BYTES: usize = 16;
/// Chunk header bytes.
pub const CHUNK_HEADER_BYTES: usize = 12;
/// Most bytes one record takes.
pub const MAX_RECORD_BYTES: usize = 2 + 3 * 10;

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
    h
}

/// Check a header; returns an error message if it is not a trace this code reads.
pub fn check_header(h: &[u8]) -> Result<(), String> {
    if h.len() < HEADER_BYTES || &h[..8] != MAGIC {
        return Err("not a blockscope memory trace (bad magic)".into());
    }
    let v = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if v != VERSION {
        return Err(format!("unsupported trace version {v} (this blockscope reads {VERSION})"));
    }
    Ok(())
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn zigzag(d: u64) -> u64 {
    (d << 1) ^ ((d as i64 >> 63) as u64)
}

fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// Writes the records of one thread as one chunk.
pub struct ChunkWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u32,
    pc: u64,
    addr: u64,
}

impl<'a> ChunkWriter<'a> {
    /// Start a chunk of `thread`'s records at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>, thread: u32) -> Self {
        let start = out.len();
        out.extend_from_slice(&thread.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        ChunkWriter { out, start, count: 0, pc: 0, addr: 0 }
    }

    /// Append one record (its thread is the chunk's).
    #[inline]
    pub fn push(&mut self, pc: u64, addr: u64, value: u64, size: u8, kind: u8) {
        let code =
            if size.is_power_of_two() && size <= 16 { size.trailing_zeros() as u8 } else { 7 };
        self.out.push(kind & 3 | code << 2);
        if code == 7 {
            self.out.push(size);
        }
        put_varint(self.out, zigzag(pc.wrapping_sub(self.pc)));
        put_varint(self.out, zigzag(addr.wrapping_sub(self.addr)));
        put_varint(self.out, value);
        (self.pc, self.addr) = (pc, addr);
        self.count += 1;
    }

    /// Fill in the chunk header.
    pub fn finish(self) {
        let len = (self.out.len() - self.start - CHUNK_HEADER_BYTES) as u32;
        self.out[self.start + 4..self.start + 8].copy_from_slice(&self.count.to_le_bytes());
        self.out[self.start + 8..self.start + 12].copy_from_slice(&len.to_le_bytes());
    }
}

/// Decode one chunk's records (`body`, after its header) of `thread`; `count` records.
/// Errors name what is wrong.
pub fn decode_chunk(
    thread: u32,
    count: u32,
    body: &[u8],
    mut f: impl FnMut(&Record) -> bool,
) -> Result<(), String> {
    let mut i = 0;
    let byte = |i: &mut usize| -> Result<u8, String> {
        let b = *body.get(*i).ok_or("truncated record")?;
        *i += 1;
        Ok(b)
    };
    let varint = |i: &mut usize| -> Result<u64, String> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = byte(i)?;
            if shift > 63 {
                return Err("bad number in a record".into());
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    };
    let (mut pc, mut addr) = (0u64, 0u64);
    for _ in 0..count {
        let tag = byte(&mut i)?;
        let size = match tag >> 2 & 7 {
            7 => byte(&mut i)?,
            c @ 0..=4 => 1 << c,
            c => return Err(format!("bad size code {c} in a record")),
        };
        pc = pc.wrapping_add(unzigzag(varint(&mut i)?));
        addr = addr.wrapping_add(unzigzag(varint(&mut i)?));
        let value = varint(&mut i)?;
        let r = Record { pc, addr, value, size, kind: tag & 3, thread };
        if !f(&r) {
            return Ok(());
        }
    }
    if i != body.len() {
        return Err("chunk length does not match its records".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let recs = [
            (0x40_1000u64, 0x7fff_ffff_e000u64, 0u64, 8u8, KIND_STORE),
            (0x40_0ff0, 0x1000, u64::MAX, 1, KIND_LOAD),
            (u64::MAX, 0, 0x1234, 10, KIND_RMW),
            (0, u64::MAX, 7, 16, KIND_LOAD),
        ];
        let mut out = Vec::new();
        let mut w = ChunkWriter::new(&mut out, 3);
        for &(pc, addr, value, size, kind) in &recs {
            w.push(pc, addr, value, size, kind);
        }
        w.finish();
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 4);
        let len = u32::from_le_bytes(out[8..12].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - CHUNK_HEADER_BYTES);
        let mut got = Vec::new();
        decode_chunk(3, 4, &out[CHUNK_HEADER_BYTES..], |r| {
            got.push(*r);
            true
        })
        .unwrap();
        let want: Vec<Record> = recs
            .iter()
            .map(|&(pc, addr, value, size, kind)| Record { pc, addr, value, size, kind, thread: 3 })
            .collect();
        assert_eq!(got, want);
        assert!(decode_chunk(3, 5, &out[CHUNK_HEADER_BYTES..], |_| true).is_err());
    }
}
