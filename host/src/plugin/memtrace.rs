//! `blockscope memtrace [--summary] [--limit N] FILE`: print or summarize a trace written
//! by the `memtrace` plugin (format: `blockscope_plugin_api::trace`). The CLI forwards its
//! arguments here.

use blockscope_plugin_api::trace::{self, Record, CHUNK_HEADER_BYTES, HEADER_BYTES};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Read, Write};

/// Usage line.
pub const USAGE: &str = "usage: blockscope memtrace [--summary] [--limit N] TRACE_FILE";

fn kind_name(k: u8) -> &'static str {
    match k {
        trace::KIND_LOAD => "load ",
        trace::KIND_STORE => "store",
        trace::KIND_RMW => "rmw  ",
        _ => "?    ",
    }
}

/// Run the subcommand; errors are one line (exit status 2 for bad usage or input).
pub fn memtrace_main(args: &[String], out: &mut dyn Write) -> Result<(), String> {
    let (mut summary, mut limit, mut file) = (false, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--summary" | "-s" => summary = true,
            "--limit" | "-n" => {
                let v = it.next().ok_or(USAGE)?;
                limit = Some(v.parse::<u64>().map_err(|_| format!("bad --limit `{v}`"))?);
            }
            f if !f.starts_with('-') && file.is_none() => file = Some(f.to_string()),
            _ => return Err(USAGE.into()),
        }
    }
    let path = file.ok_or(USAGE)?;
    let f = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut h = [0u8; HEADER_BYTES];
    r.read_exact(&mut h)
        .map_err(|_| format!("{path}: not a blockscope memory trace (too short)"))?;
    trace::check_header(&h).map_err(|e| format!("{path}: {e}"))?;
    let io = |e: std::io::Error| format!("write error: {e}");
    let mut s = Summary::default();
    let mut n = 0u64;
    let mut werr = None;
    let mut body = Vec::new();
    let mut dec = trace::Decoder::new();
    loop {
        let mut ch = [0u8; CHUNK_HEADER_BYTES];
        match read_full(&mut r, &mut ch) {
            Ok(0) => break,
            Ok(k) if k == CHUNK_HEADER_BYTES => {}
            Ok(_) => return Err(format!("{path}: truncated chunk header")),
            Err(e) => return Err(format!("{path}: {e}")),
        }
        let h = trace::ChunkHeader::parse(&ch);
        // Read what is there, not what the header claims: a damaged length must not
        // allocate gigabytes.
        body.clear();
        (&mut r).take(h.len as u64).read_to_end(&mut body).map_err(|e| format!("{path}: {e}"))?;
        if body.len() != h.len as usize {
            return Err(format!("{path}: truncated chunk"));
        }
        let mut done = false;
        dec.chunk(&h, &body, |rec| {
            if summary {
                s.add(rec);
            } else if let Err(e) = writeln!(
                out,
                "T{} {:#x} {} {} [{:#x}] = {:#x}",
                rec.thread,
                rec.pc,
                kind_name(rec.kind),
                rec.size,
                rec.addr,
                rec.value
            ) {
                werr = Some(io(e));
                return false;
            }
            n += 1;
            done = limit.is_some_and(|l| n >= l);
            !done
        })
        .map_err(|e| format!("{path}: {e}"))?;
        if let Some(e) = werr {
            return Err(e);
        }
        if done {
            break;
        }
    }
    if summary {
        s.write(out).map_err(io)?;
    }
    Ok(())
}

/// Read until `buf` is full or the file ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut k = 0;
    while k < buf.len() {
        match r.read(&mut buf[k..]) {
            Ok(0) => break,
            Ok(m) => k += m,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(k)
}

/// A hasher for keys that are already well spread or nearly so (pcs, page numbers): one
/// multiply. The default SipHash made `--summary` spend most of its time hashing (about
/// 50 ns a record over three tables).
#[derive(Default)]
struct MulHasher(u64);

impl std::hash::Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

type Fast = std::hash::BuildHasherDefault<MulHasher>;

#[derive(Default)]
struct Summary {
    records: u64,
    by_kind: [u64; 4],
    bytes: u64,
    pages: HashSet<u64, Fast>,
    /// The last page inserted (most accesses stay on a page for a while).
    last_page: Option<u64>,
    threads: BTreeMap<u32, u64>,
    /// Records of `cur_thread` not yet added to `threads` (a chunk is one thread's).
    cur_thread: Option<(u32, u64)>,
    pcs: HashMap<u64, u64, Fast>,
}

impl Summary {
    fn add(&mut self, r: &Record) {
        self.records += 1;
        self.by_kind[(r.kind & 3) as usize] += 1;
        self.bytes += r.size as u64;
        let page = r.addr >> 12;
        if self.last_page != Some(page) {
            self.pages.insert(page);
            self.last_page = Some(page);
        }
        match &mut self.cur_thread {
            Some((t, n)) if *t == r.thread => *n += 1,
            cur => {
                if let Some((t, n)) = cur.replace((r.thread, 1)) {
                    *self.threads.entry(t).or_default() += n;
                }
            }
        }
        *self.pcs.entry(r.pc).or_default() += 1;
    }
    fn write(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some((t, n)) = self.cur_thread.take() {
            *self.threads.entry(t).or_default() += n;
        }
        writeln!(out, "accesses: {}", self.records)?;
        writeln!(
            out,
            "loads: {}  stores: {}  rmw: {}",
            self.by_kind[trace::KIND_LOAD as usize],
            self.by_kind[trace::KIND_STORE as usize],
            self.by_kind[trace::KIND_RMW as usize]
        )?;
        writeln!(out, "bytes: {}  distinct 4K pages: {}", self.bytes, self.pages.len())?;
        for (t, n) in &self.threads {
            writeln!(out, "thread {t}: {n}")?;
        }
        let mut top: Vec<(u64, u64)> = self.pcs.iter().map(|(&p, &n)| (n, p)).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        writeln!(out, "top instructions by accesses:")?;
        for (n, pc) in top.iter().take(10) {
            writeln!(out, "  {pc:#x}: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_threads_pages_and_sites_across_switches() {
        let rec = |thread, pc, addr| Record { pc, addr, value: 0, size: 8, kind: 1, thread };
        let mut s = Summary::default();
        // Thread 0, then 1, then 0 again (chunks of threads interleave); pages revisited
        // after another page in between; one pc far more frequent than the others.
        for i in 0..10u64 {
            s.add(&rec(0, 0x1000, 0x7000 + 8 * i));
        }
        for i in 0..3u64 {
            s.add(&rec(1, 0x2000 + i, 0x9000));
        }
        s.add(&rec(0, 0x1000, 0x8000));
        s.add(&rec(0, 0x1000, 0x7000));
        let mut out = Vec::new();
        s.write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("accesses: 15\nloads: 15  stores: 0  rmw: 0\n"), "{text}");
        assert!(text.contains("bytes: 120  distinct 4K pages: 3\n"), "{text}");
        assert!(text.contains("thread 0: 12\nthread 1: 3\n"), "{text}");
        assert!(text.contains("top instructions by accesses:\n  0x1000: 12\n"), "{text}");
    }
}
