//! The memory-trace file format, shared by the `memtrace` plugin (writer) and the
//! `blockscope memtrace` command (reader) so the two cannot drift apart.
//!
//! A file is a 16-byte header — the magic `BSMTRACE`, the format version (u32, 3) and 0
//! (u32) — followed by chunks. All fixed-width numbers are little-endian. Each chunk
//! has a 16-byte header: kind (u32), a (u32), count (u32), byte length of the body (u32).
//!
//! - Kind 1, *sites*: defines `count` sites numbered from `a`, which is the number of
//!   sites defined before it (sites are numbered 0, 1, 2... in file order). A site is one
//!   memory access of one instruction: pc (u64), size in bytes (u8), kind (u8, `KIND_*`),
//!   10 bytes each. A site is defined before the first records chunk that uses it.
//! - Kind 2, *records*: `count` records of thread `a`, in the order the thread made them
//!   (threads' chunks are interleaved).
//!
//! Records are encoded against a model of the trace so far that the writer and the reader
//! keep alike; the file is read from the start. The model is one for the whole file,
//! updated by every record in file order whatever its thread (threads switch only at
//! chunk boundaries; one model keeps both sides' memory bounded by the number of sites,
//! however many threads a program starts). It holds: the previous record's site,
//! address and value (all 0 at the start); per site its predicted successor (initially
//! the next site id; "the previous site" of the first record predicts site 0), last
//! address, stride, offset from the previous record's address, and last value (0
//! initially); and a table of 4096 (address, value) pairs, the last value seen at each
//! address, indexed by `slot(address)` (a multiplicative hash, see [`slot`]; all
//! (0, 0) at the start).
//!
//! A record is a tag byte, `tag = s + 2 * (a + 10 * v)` (so below 200), and then the
//! fields it says follow, in this order:
//! - `s` = 1: the site is not the predicted successor of the previous record's site;
//!   `site - predicted` follows (as i32, zigzag LEB128), and the site becomes the
//!   previous site's predicted successor;
//! - `a`, the address: 0 = the site's last address + its stride; 1 = the previous
//!   record's address + the site's offset from it; 2..=9 = `address - site's last
//!   address` follows, zigzag, in `a - 1` bytes (little-endian), and becomes the site's
//!   stride. Afterwards the site's offset is `address - previous record's address`;
//! - `v`, the value (zero-extended from the access size; the old value for RMW), with
//!   `base` = the table's value when its slot holds this address, else the site's last
//!   value: 0 = `base`; 1 = the previous record's value; 2..=9 = `value ^ base` follows in
//!   `v - 1` bytes (little-endian).
//!
//! Afterwards the table slot holds (address, value) and the site's last value is the
//! value. Lengths in the tag rather than LEB128 keep encoding to a few branches a record;
//! on the `bytecode` benchmark the trace takes about 1.7 bytes a record.

/// File magic.
pub const MAGIC: &[u8; 8] = b"BSMTRACE";
/// Format version.
pub const VERSION: u32 = 3;
/// Header bytes.
pub const HEADER_BYTES: usize = 16;
/// Chunk header bytes.
pub const CHUNK_HEADER_BYTES: usize = 16;
/// Chunk kind: site definitions.
pub const CHUNK_SITES: u32 = 1;
/// Chunk kind: records of one thread.
pub const CHUNK_RECORDS: u32 = 2;
/// Bytes of one site definition.
pub const SITE_BYTES: usize = 10;
/// Most bytes one record takes (tag, site, address, value).
pub const MAX_RECORD_BYTES: usize = 1 + 5 + 8 + 8;
/// Entries of the model's (address, value) table.
pub const MEM_SLOTS: usize = 1 << MEM_BITS;
const MEM_BITS: u32 = 12;

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

/// One access site: an instruction's memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Site {
    /// Address of the instruction.
    pub pc: u64,
    /// Access size in bytes.
    pub size: u8,
    /// `KIND_*`.
    pub kind: u8,
}

/// A chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// `CHUNK_*`.
    pub kind: u32,
    /// Sites: the first site's id. Records: the thread.
    pub a: u32,
    /// Sites or records in the chunk.
    pub count: u32,
    /// Bytes of the body after the header.
    pub len: u32,
}

impl ChunkHeader {
    /// Parse the 16 bytes of a chunk header.
    pub fn parse(b: &[u8; CHUNK_HEADER_BYTES]) -> ChunkHeader {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        ChunkHeader { kind: w(0), a: w(4), count: w(8), len: w(12) }
    }

    fn write(&self, out: &mut [u8]) {
        for (i, w) in [self.kind, self.a, self.count, self.len].into_iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
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

/// The mask that zero-extends a value from `size` bytes.
fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

/// The (address, value) table slot of `addr`.
#[inline]
pub fn slot(addr: u64) -> usize {
    (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - MEM_BITS)) as usize
}

/// Bytes needed for `x` (0 for 0).
#[inline]
fn bytes_of(x: u64) -> usize {
    (71 - x.leading_zeros() as usize) / 8
}

#[inline]
fn zigzag(d: u64) -> u64 {
    (d << 1) ^ ((d as i64 >> 63) as u64)
}

#[inline]
fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// `v` (below 2^35) as LEB128 in the low bytes of a word, and its length.
#[inline]
fn varint5(mut v: u64) -> (u64, usize) {
    let (mut out, mut k) = (0u64, 0);
    while v >= 0x80 {
        out |= (v & 0x7f | 0x80) << (8 * k);
        v >>= 7;
        k += 1;
    }
    (out | v << (8 * k), k + 1)
}

/// Per-site model state.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct SiteState {
    addr: u64,
    stride: u64,
    poff: u64,
    value: u64,
    mask: u64,
    next: u32,
}

/// The model both sides keep (see the module doc). `st[0]` is the start, `st[id + 1]` site
/// `id`.
struct Model {
    st: Vec<SiteState>,
    mem: Box<[[u64; 2]; MEM_SLOTS]>,
    prev: usize,
    prev_addr: u64,
    prev_value: u64,
}

impl Model {
    fn new() -> Model {
        let start = SiteState { next: 0, ..Default::default() };
        let mem = vec![[0u64; 2]; MEM_SLOTS].into_boxed_slice().try_into().expect("MEM_SLOTS");
        Model { st: vec![start], mem, prev: 0, prev_addr: 0, prev_value: 0 }
    }

    fn define(&mut self, s: &Site) {
        let id = self.st.len() as u32 - 1;
        self.st.push(SiteState {
            mask: mask(s.size),
            next: id.wrapping_add(1),
            ..Default::default()
        });
    }
}

/// Encodes a trace: the writer defines sites as they appear and encodes buffers of records
/// into chunks (the file header is not included).
pub struct Encoder {
    model: Model,
    pending: Vec<Site>,
    defined: u32,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder with no sites.
    pub fn new() -> Encoder {
        Encoder { model: Model::new(), pending: Vec::new(), defined: 0 }
    }

    /// Sites defined so far; the next one gets this id.
    pub fn sites(&self) -> u32 {
        self.defined + self.pending.len() as u32
    }

    /// Define the next site (written out before the next records chunk).
    pub fn define_site(&mut self, s: Site) {
        self.model.define(&s);
        self.pending.push(s);
    }

    /// Most bytes [`Encoder::encode`] writes for `words` buffer words.
    pub fn bound(&self, words: usize) -> usize {
        self.bound_records(words / 3)
    }

    /// Most bytes [`Encoder::encode_columns`] writes for `n` records.
    pub fn bound_records(&self, n: usize) -> usize {
        2 * CHUNK_HEADER_BYTES + self.pending.len() * SITE_BYTES + n * MAX_RECORD_BYTES
    }

    /// [`Encoder::encode`] appending to a vector.
    pub fn encode_to_vec(&mut self, thread: u32, words: &[u64], out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + self.bound(words.len()), 0);
        let n = self.encode(thread, words, &mut out[at..]);
        out.truncate(at + n);
    }

    /// Encode buffer words — per record the site id, the address and the value (zero-
    /// extended here from the site's size) — as a records chunk of `thread` at the start
    /// of `out`, preceded by a sites chunk if sites were defined since the last call.
    /// Returns the bytes written. `out` must hold [`Encoder::bound`] bytes (it is written
    /// a few bytes past what is returned). Records naming an undefined site are dropped.
    pub fn encode(&mut self, thread: u32, words: &[u64], out: &mut [u8]) -> usize {
        let n = words.len() / 3;
        let col = |k: usize| words.chunks_exact(3).map(|r| r[k]).collect::<Vec<u64>>();
        self.encode_columns(thread, &col(0)[..n], &col(1)[..n], &col(2)[..n], out)
    }

    /// [`Encoder::encode`] for records given as columns: `sites[i]`, `addrs[i]` and
    /// `values[i]` make record `i` (the longest common prefix is encoded). `out` must hold
    /// [`Encoder::bound_records`] bytes.
    pub fn encode_columns(
        &mut self,
        thread: u32,
        sites: &[u64],
        addrs: &[u64],
        values: &[u64],
        out: &mut [u8],
    ) -> usize {
        let n = sites.len().min(addrs.len()).min(values.len());
        let (sites_in, addrs, values) = (&sites[..n], &addrs[..n], &values[..n]);
        assert!(out.len() >= self.bound_records(n), "encode: output too small");
        if n == 0 {
            return 0;
        }
        let mut p = 0;
        if !self.pending.is_empty() {
            let n = self.pending.len();
            let h = ChunkHeader {
                kind: CHUNK_SITES,
                a: self.defined,
                count: n as u32,
                len: (n * SITE_BYTES) as u32,
            };
            h.write(&mut out[..CHUNK_HEADER_BYTES]);
            p += CHUNK_HEADER_BYTES;
            for s in &self.pending {
                out[p..p + 8].copy_from_slice(&s.pc.to_le_bytes());
                out[p + 8] = s.size;
                out[p + 9] = s.kind;
                p += SITE_BYTES;
            }
            self.defined += n as u32;
            self.pending.clear();
        }
        let start = p;
        p += CHUNK_HEADER_BYTES;
        let Model { st, mem, prev, prev_addr, prev_value } = &mut self.model;
        let (mut prev, mut prev_addr, mut prev_value) = (*prev, *prev_addr, *prev_value);
        let sites = st.len() as u64 - 1;
        let mut skipped = 0usize;
        let st = &mut st[..];
        for ((&site, &addr), &value) in sites_in.iter().zip(addrs).zip(values) {
            if site >= sites {
                skipped += 1;
                continue;
            }
            // The fields are written into this window at offsets that provably fit
            // (hence the `min`s, which never bind). This loop is the memtrace writer's
            // whole cost and is bound by register pressure; unchecked indexing (the
            // window and `st`) frees the registers bounds checks hold: 20% faster on
            // bytecode's records, the change to `skipped` included.
            // SAFETY: `p + MAX_RECORD_BYTES <= out.len()`. The assert above gives
            // `out.len() >= bound_records(n)`: two chunk headers, the pending sites and
            // MAX_RECORD_BYTES per record. `p` starts past the sites chunk and this
            // chunk's header, and each record moves it by `q <= MAX_RECORD_BYTES`.
            #[allow(unsafe_code)]
            let w: &mut [u8; MAX_RECORD_BYTES] =
                unsafe { &mut *(out.as_mut_ptr().add(p) as *mut [u8; MAX_RECORD_BYTES]) };
            let mut q = 1;
            // The site. `prev < st.len()` always: it starts as the model's, which is 0
            // or a defined site + 1 (sites are never removed), and below becomes
            // `site + 1` only for `site < st.len() - 1`.
            #[allow(unsafe_code)]
            // SAFETY: `prev < st.len()`, above.
            let pred = unsafe { st.get_unchecked(prev).next };
            let mut tag = 0usize;
            if site as u32 != pred {
                tag = 1;
                let (v, k) = varint5(zigzag((site as u32).wrapping_sub(pred) as i32 as u64));
                w[1..9].copy_from_slice(&v.to_le_bytes());
                q += k;
                #[allow(unsafe_code)]
                // SAFETY: `prev < st.len()`, above.
                unsafe {
                    st.get_unchecked_mut(prev).next = site as u32
                };
            }
            prev = site as usize + 1;
            #[allow(unsafe_code)]
            // SAFETY: `prev < st.len()`, above.
            let s = unsafe { st.get_unchecked_mut(prev) };
            // The address.
            let a = if addr == s.addr.wrapping_add(s.stride) {
                0
            } else if addr == prev_addr.wrapping_add(s.poff) {
                1
            } else {
                let d = addr.wrapping_sub(s.addr);
                let z = zigzag(d);
                let q0 = q.min(6);
                w[q0..q0 + 8].copy_from_slice(&z.to_le_bytes());
                let k = bytes_of(z | 1);
                q = q0 + k;
                s.stride = d;
                1 + k
            };
            s.poff = addr.wrapping_sub(prev_addr);
            s.addr = addr;
            prev_addr = addr;
            // The value.
            let v = value & s.mask;
            let m = &mut mem[slot(addr)];
            let base = if m[0] == addr { m[1] } else { s.value };
            let x = v ^ base;
            let c = if x == 0 {
                0
            } else if v == prev_value {
                1
            } else {
                let q0 = q.min(14);
                w[q0..q0 + 8].copy_from_slice(&x.to_le_bytes());
                let k = bytes_of(x);
                q = q0 + k;
                1 + k
            };
            *m = [addr, v];
            s.value = v;
            prev_value = v;
            tag += 2 * (a + 10 * c);
            w[0] = tag as u8;
            p += q;
        }
        let count = (n - skipped) as u32;
        self.model.prev = prev;
        self.model.prev_addr = prev_addr;
        self.model.prev_value = prev_value;
        let len = (p - start - CHUNK_HEADER_BYTES) as u32;
        ChunkHeader { kind: CHUNK_RECORDS, a: thread, count, len }
            .write(&mut out[start..start + CHUNK_HEADER_BYTES]);
        p
    }
}

/// Decodes a trace chunk by chunk, in file order.
pub struct Decoder {
    model: Model,
    sites: Vec<Site>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads a record's bytes; errors say what is wrong.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.b.get(self.i).ok_or("truncated record")?;
        self.i += 1;
        Ok(b)
    }
    fn varint(&mut self) -> Result<u64, String> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = self.byte()?;
            if shift > 63 || (shift == 63 && b > 1) {
                return Err("bad number in a record".into());
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }
    fn bytes(&mut self, k: usize) -> Result<u64, String> {
        let s = self.b.get(self.i..self.i + k).ok_or("truncated record")?;
        self.i += k;
        Ok(s.iter().rev().fold(0, |v, &b| v << 8 | b as u64))
    }
}

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> Decoder {
        Decoder { model: Model::new(), sites: Vec::new() }
    }

    /// The sites defined so far.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Decode one chunk (`body`: the `h.len` bytes after its header), calling `f` on each
    /// record; returns false when `f` did (and the chunk was not read to its end).
    pub fn chunk(
        &mut self,
        h: &ChunkHeader,
        body: &[u8],
        mut f: impl FnMut(&Record) -> bool,
    ) -> Result<bool, String> {
        if body.len() != h.len as usize {
            return Err("chunk length does not match its body".into());
        }
        match h.kind {
            CHUNK_SITES => {
                if h.a as usize != self.sites.len() {
                    return Err(format!(
                        "site chunk starts at site {} but {} are defined",
                        h.a,
                        self.sites.len()
                    ));
                }
                if h.count as usize * SITE_BYTES != body.len() {
                    return Err("site chunk length does not match its count".into());
                }
                for d in body.chunks_exact(SITE_BYTES) {
                    let pc = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
                    let s = Site { pc, size: d[8], kind: d[9] };
                    self.model.define(&s);
                    self.sites.push(s);
                }
                Ok(true)
            }
            CHUNK_RECORDS => self.records(h.a, h.count, body, &mut f),
            k => Err(format!("unknown chunk kind {k}")),
        }
    }

    fn records(
        &mut self,
        thread: u32,
        count: u32,
        body: &[u8],
        f: &mut impl FnMut(&Record) -> bool,
    ) -> Result<bool, String> {
        let mut c = Cursor { b: body, i: 0 };
        let m = &mut self.model;
        for _ in 0..count {
            let tag = c.byte()?;
            if tag >= 200 {
                return Err(format!("bad record tag {tag}"));
            }
            let (a, v) = ((tag >> 1) % 10, (tag >> 1) / 10);
            let pred = m.st[m.prev].next;
            let site = if tag & 1 != 0 {
                let site = pred.wrapping_add(unzigzag(c.varint()?) as u32);
                m.st[m.prev].next = site;
                site
            } else {
                pred
            };
            let Some(info) = self.sites.get(site as usize) else {
                return Err(format!("record of undefined site {site}"));
            };
            m.prev = site as usize + 1;
            let s = &mut m.st[m.prev];
            let addr = match a {
                0 => s.addr.wrapping_add(s.stride),
                1 => m.prev_addr.wrapping_add(s.poff),
                k => {
                    let d = unzigzag(c.bytes(k as usize - 1)?);
                    s.stride = d;
                    s.addr.wrapping_add(d)
                }
            };
            s.poff = addr.wrapping_sub(m.prev_addr);
            s.addr = addr;
            m.prev_addr = addr;
            let e = &mut m.mem[slot(addr)];
            let base = if e[0] == addr { e[1] } else { s.value };
            let value = match v {
                0 => base,
                1 => m.prev_value,
                k => base ^ c.bytes(k as usize - 1)?,
            };
            *e = [addr, value];
            s.value = value;
            m.prev_value = value;
            let r = Record { pc: info.pc, addr, value, size: info.size, kind: info.kind, thread };
            if !f(&r) {
                return Ok(false);
            }
        }
        if c.i != body.len() {
            return Err("chunk length does not match its records".into());
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible pseudo-random numbers.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const EXTREMES: [u64; 8] = [0, 1, 0x7f, 0x80, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1];

    /// Decode a whole encoded byte string (after the file header).
    fn decode(bytes: &[u8]) -> Result<Vec<Record>, String> {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let h = bytes.get(i..i + CHUNK_HEADER_BYTES).ok_or("truncated chunk header")?;
            let h = ChunkHeader::parse(h.try_into().unwrap());
            i += CHUNK_HEADER_BYTES;
            let body = bytes.get(i..i + h.len as usize).ok_or("truncated chunk")?;
            i += h.len as usize;
            d.chunk(&h, body, |r| {
                got.push(*r);
                true
            })?;
        }
        Ok(got)
    }

    #[test]
    fn records_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut enc = Encoder::new();
        let mut sites: Vec<Site> = Vec::new();
        let mut want = Vec::new();
        let mut out = Vec::new();
        // Per thread: a "loop" of sites it walks (so predictions hit) with random detours.
        for round in 0..400 {
            // Sites appear late: a few more every few rounds, some with odd sizes.
            if round % 7 == 0 {
                for _ in 0..1 + rng.below(20) {
                    let size = [1, 2, 4, 8, 16, 10, 0, 255][rng.below(8) as usize];
                    let pc = match rng.below(4) {
                        0 => EXTREMES[rng.below(8) as usize],
                        _ => 0x40_0000 + rng.below(0x1000),
                    };
                    let s = Site { pc, size, kind: 1 + rng.below(3) as u8 };
                    enc.define_site(s);
                    sites.push(s);
                }
            }
            let thread = [0, 1, 2, u32::MAX][rng.below(4) as usize];
            let mut words = Vec::new();
            let n = rng.below(300);
            let mut site = rng.below(sites.len() as u64);
            let mut addr = 0x7fff_0000u64;
            for _ in 0..n {
                site = if rng.below(8) == 0 {
                    rng.below(sites.len() as u64)
                } else {
                    (site + 1) % sites.len() as u64
                };
                addr = match rng.below(6) {
                    0 => EXTREMES[rng.below(8) as usize],
                    1 => rng.next(),
                    2 => addr,
                    _ => addr.wrapping_add(8 * rng.below(4)),
                };
                let value = match rng.below(5) {
                    0 => EXTREMES[rng.below(8) as usize],
                    1 => rng.next(),
                    2 => rng.below(300),
                    _ => addr & 0xff,
                };
                words.extend_from_slice(&[site, addr, value]);
                let s = sites[site as usize];
                let value = value & mask(s.size);
                want.push(Record { pc: s.pc, addr, value, size: s.size, kind: s.kind, thread });
            }
            // An undefined site is dropped, the rest of the chunk kept.
            if round == 5 {
                words.extend_from_slice(&[u64::MAX, 1, 2]);
            }
            enc.encode_to_vec(thread, &words, &mut out);
        }
        let got = decode(&out).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "record {i}");
        }
        // Cut short anywhere inside: an error, never a panic or wrong records.
        let step = out.len() / 300 + 1;
        for cut in (0..out.len()).step_by(step) {
            if let Ok(g) = decode(&out[..cut]) {
                assert!(g.len() <= want.len() && g[..] == want[..g.len()], "cut at {cut}");
            }
        }
        // Damaged anywhere: an error or some records, never a panic.
        for at in (0..out.len()).step_by(step + 3) {
            let mut bad = out.clone();
            bad[at] ^= 1 << rng.below(8);
            let _ = decode(&bad);
        }
    }

    #[test]
    fn worst_case_records_stay_inside_the_bound() {
        // The encoder writes records without bounds checks, trusting `bound_records`.
        // Every record here is nearly as long as a record can be (a site far from the
        // predicted one, a far address, a value unlike any before; only the site
        // difference is short of its 5-byte maximum); bytes past the bound must stay
        // untouched.
        let mut rng = Rng(7);
        let mut enc = Encoder::new();
        let mut head = Vec::new();
        for i in 0..70_000u64 {
            enc.define_site(Site { pc: i, size: 8, kind: KIND_STORE });
        }
        enc.encode_to_vec(3, &[0, 0, 0], &mut head);
        let n = 5000;
        let sites: Vec<u64> = (0..n).map(|_| rng.below(70_000)).collect();
        let addrs: Vec<u64> = (0..n).map(|_| rng.next() | 1 << 63).collect();
        let values: Vec<u64> = (0..n).map(|_| rng.next() | 1 << 63).collect();
        let bound = enc.bound_records(n);
        let mut out = vec![0xa5u8; bound + 64];
        let len = enc.encode_columns(3, &sites, &addrs, &values, &mut out[..bound]);
        assert!(len <= bound);
        assert!(len > n * (MAX_RECORD_BYTES - 3), "records are not near the worst case");
        assert!(out[bound..].iter().all(|&b| b == 0xa5), "wrote past the bound");
        head.extend_from_slice(&out[..len]);
        let got = decode(&head).unwrap();
        assert_eq!(got.len(), n + 1);
        assert!(got[1..].iter().zip(&addrs).all(|(g, &a)| g.addr == a));
    }

    #[test]
    fn predicted_records_are_one_byte() {
        let mut enc = Encoder::new();
        for i in 0..3 {
            enc.define_site(Site { pc: 0x1000 + i, size: 8, kind: KIND_LOAD });
        }
        // A loop over three sites: a stride, an offset from the previous access, a
        // repeated value.
        let mut words = Vec::new();
        for i in 0..1000u64 {
            words.extend_from_slice(&[0, 0x1000 + 8 * i, 5, 1, 0x1008 + 8 * i, 5, 2, 0x9000, 7]);
        }
        let mut b = Vec::new();
        enc.encode_to_vec(0, &words, &mut b);
        let sites = CHUNK_HEADER_BYTES + 3 * SITE_BYTES;
        assert!(b.len() - sites - CHUNK_HEADER_BYTES < 3000 + 40, "{} bytes", b.len());
        assert_eq!(decode(&b).unwrap().len(), 3000);
    }

    #[test]
    fn columns_encode_like_interleaved_words() {
        let sites = [
            Site { pc: 0x1000, size: 4, kind: KIND_LOAD },
            Site { pc: 0x1004, size: 8, kind: KIND_STORE },
        ];
        let mut rng = Rng(7);
        let recs: Vec<[u64; 3]> =
            (0..500).map(|_| [rng.below(2), 0x7000 + 8 * rng.below(64), rng.next()]).collect();
        let words: Vec<u64> = recs.iter().flatten().copied().collect();
        let (mut a, mut b) = (Encoder::new(), Encoder::new());
        for s in sites {
            a.define_site(s);
            b.define_site(s);
        }
        let mut wa = Vec::new();
        a.encode_to_vec(3, &words, &mut wa);
        // A longer value column: the common prefix is encoded.
        let col = |k: usize| recs.iter().map(|r| r[k]).collect::<Vec<u64>>();
        let mut values = col(2);
        values.push(1);
        let mut wb = vec![0u8; b.bound_records(501)];
        let n = b.encode_columns(3, &col(0), &col(1), &values, &mut wb);
        assert_eq!(&wb[..n], &wa[..]);
        let back = decode(&wa).unwrap();
        assert_eq!(back.len(), 500);
        assert_eq!((back[9].addr, back[9].thread), (recs[9][1], 3));
    }

    #[test]
    fn bad_chunks_are_errors() {
        let mut d = Decoder::new();
        let h = ChunkHeader { kind: 9, a: 0, count: 0, len: 0 };
        assert_eq!(d.chunk(&h, &[], |_| true).unwrap_err(), "unknown chunk kind 9");
        let h = ChunkHeader { kind: CHUNK_SITES, a: 3, count: 0, len: 0 };
        assert!(d.chunk(&h, &[], |_| true).unwrap_err().contains("starts at site 3"));
        let h = ChunkHeader { kind: CHUNK_RECORDS, a: 0, count: 1, len: 1 };
        assert_eq!(d.chunk(&h, &[0], |_| true).unwrap_err(), "record of undefined site 0");
    }
}
