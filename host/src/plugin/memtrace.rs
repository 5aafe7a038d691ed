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

#[derive(Default)]
struct Summary {
    records: u64,
    by_kind: [u64; 4],
    bytes: u64,
    pages: HashSet<u64>,
    threads: BTreeMap<u32, u64>,
    pcs: HashMap<u64, u64>,
}

impl Summary {
    fn add(&mut self, r: &Record) {
        self.records += 1;
        self.by_kind[(r.kind & 3) as usize] += 1;
        self.bytes += r.size as u64;
        self.pages.insert(r.addr >> 12);
        *self.threads.entry(r.thread).or_default() += 1;
        *self.pcs.entry(r.pc).or_default() += 1;
    }
    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
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
