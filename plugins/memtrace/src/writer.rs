//! The trace writer: one thread encodes the queued buffers in order, another writes the
//! encoded bytes, so encoding goes on while the disk is busy.
//!
//! A regular file is written with `O_DIRECT` in pieces of whole 4 KiB blocks at block
//! offsets (from block-aligned places in the buffers): the bytes go from the buffer to
//! the disk without being copied into the page cache, which for a trace of gigabytes
//! costs several times less CPU and leaves no gigabytes of dirty pages to slow down
//! whatever runs next. The last partial block is written normally at the end. Anything
//! else (a pipe, a device, a file system without `O_DIRECT`) gets plain writes.

use crate::queue::Queue;
use crate::{lock, Pool, Sites};
use blockscope_plugin_api::trace::{self, Encoder};
use blockscope_plugin_api::Host;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A copied trace buffer on its way to the writer thread.
pub(crate) struct Batch {
    pub vcpu: u32,
    /// Site ids, addresses, values (`len` records of each).
    pub cols: [Vec<u64>; 3],
    pub len: usize,
}

/// How the I/O thread reports a write error.
type Report = Box<dyn Fn(&str) + Send>;

/// `O_DIRECT` alignment of buffers, lengths and offsets.
const BLOCK: usize = 4096;
/// Bytes handed to the I/O thread at a time.
const WRITE_BYTES: usize = 4 << 20;
/// Pieces queued for the I/O thread at most.
const IO_QUEUE: usize = 2;

/// An output buffer: bytes `start..pos` are encoded and not yet written; `start` is
/// block-aligned in memory.
struct Out {
    buf: Vec<u8>,
    start: usize,
    pos: usize,
}

impl Out {
    /// A buffer with room for `bytes` after an aligned start.
    fn new(bytes: usize) -> Out {
        Out::reuse(vec![0; bytes + BLOCK])
    }
    fn reuse(buf: Vec<u8>) -> Out {
        let start = (BLOCK - buf.as_ptr() as usize % BLOCK) % BLOCK;
        Out { buf, start, pos: start }
    }
    fn used(&self) -> usize {
        self.pos - self.start
    }
    fn room(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A piece for the I/O thread: `buf[start..end]`, at file offset `offset` (direct mode).
struct Piece {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    offset: u64,
}

/// The writing side of the encoder thread.
struct Io {
    /// `O_DIRECT` pieces at offsets (else plain sequential writes).
    direct: bool,
    tx: Option<SyncSender<Piece>>,
    /// Buffers the I/O thread is done with.
    free: Receiver<Vec<u8>>,
    /// Returns whether a write failed (it reported the error).
    thread: Option<JoinHandle<bool>>,
    /// The file as created (for the last partial block in direct mode).
    file: File,
    /// File offset of the next piece (direct mode).
    offset: u64,
}

impl Io {
    /// Start the I/O thread on `file` (at offset `trace::HEADER_BYTES`, the header
    /// written); returns it and the first output buffer.
    fn start(file: File, path: &str, report: Report) -> Result<(Io, Out), String> {
        let regular = file.metadata().map(|m| m.file_type().is_file()).unwrap_or(false);
        let direct = if regular {
            OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
        } else {
            None
        };
        let mut out = Out::new(WRITE_BYTES + (1 << 20));
        if direct.is_some() {
            // Direct pieces start at offset 0: rewrite the header with them.
            out.buf[out.start..out.start + trace::HEADER_BYTES].copy_from_slice(&trace::header());
            out.pos += trace::HEADER_BYTES;
        }
        let (tx, rx) = mpsc::sync_channel::<Piece>(IO_QUEUE);
        let (free_tx, free) = mpsc::channel();
        let is_direct = direct.is_some();
        let plain = file.try_clone().map_err(|e| format!("cannot write the trace: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("memtrace-io".into())
            .spawn(move || io_loop(rx, free_tx, direct, plain, report))
            .map_err(|e| format!("cannot start the trace writer: {e}"))?;
        let io =
            Io { direct: is_direct, tx: Some(tx), free, thread: Some(thread), file, offset: 0 };
        Ok((io, out))
    }

    /// Hand the encoded bytes of `out` to the I/O thread (in direct mode whole blocks
    /// only: the rest moves to the next buffer), and make `out` a buffer with room for
    /// at least `room` bytes.
    fn send(&mut self, out: &mut Out, room: usize) {
        let n = if self.direct { out.used() / BLOCK * BLOCK } else { out.used() };
        if n > 0 {
            let next = self.free.try_recv().unwrap_or_default();
            let mut next = if next.len() >= room + BLOCK + BLOCK {
                Out::reuse(next)
            } else {
                Out::new((room + BLOCK).max(WRITE_BYTES + (1 << 20)))
            };
            let tail = out.start + n..out.pos;
            let k = tail.len();
            next.buf[next.start..next.start + k].copy_from_slice(&out.buf[tail]);
            next.pos += k;
            let full = std::mem::replace(out, next);
            let piece = Piece {
                start: full.start,
                end: full.start + n,
                buf: full.buf,
                offset: self.offset,
            };
            self.offset += n as u64;
            if let Some(tx) = &self.tx {
                // Fails only if the I/O thread is gone; it reports why when joined.
                let _ = tx.send(piece);
            }
        }
        if out.room() < room {
            // Only a block's worth of bytes is left: move them to a bigger buffer.
            let mut big = Out::new(out.used() + room);
            let k = out.used();
            big.buf[big.start..big.start + k].copy_from_slice(&out.buf[out.start..out.pos]);
            big.pos += k;
            *out = big;
        }
    }

    /// Write everything and wait for the I/O thread; the error if the last write failed
    /// (the I/O thread reported its own).
    fn finish(mut self, mut out: Out) -> Result<(), String> {
        self.send(&mut out, 0);
        drop(self.tx.take());
        let failed = match self.thread.take().map(|t| t.join()) {
            Some(Ok(failed)) => failed,
            Some(Err(_)) => return Err("the trace writer failed; the trace is incomplete".into()),
            None => false,
        };
        if self.direct && out.used() > 0 && !failed {
            self.file
                .write_all_at(&out.buf[out.start..out.pos], self.offset)
                .map_err(|e| format!("cannot write the trace: {e}"))?;
        }
        Ok(())
    }
}

/// The I/O thread: write each piece (direct at its offset, falling back to a plain write
/// at the offset if the file system refuses; else sequentially), hand its buffer back.
/// The first error is reported and the rest dropped; returns whether that happened.
fn io_loop(
    rx: Receiver<Piece>,
    free: Sender<Vec<u8>>,
    direct: Option<File>,
    mut plain: File,
    report: Report,
) -> bool {
    let mut failed = false;
    for p in rx {
        if !failed {
            let bytes = &p.buf[p.start..p.end];
            let r = match &direct {
                Some(d) => {
                    d.write_all_at(bytes, p.offset).or_else(|_| plain.write_all_at(bytes, p.offset))
                }
                None => plain.write_all(bytes),
            };
            if let Err(e) = r {
                report(&format!("cannot write the trace: {e}"));
                failed = true;
            }
        }
        let _ = free.send(p.buf);
    }
    failed
}

/// The encoder thread: define the sites each batch may use, encode it, hand the bytes to
/// the I/O thread; report the first error once.
pub(crate) fn encode_loop(
    queue: &Queue<Batch>,
    file: File,
    path: String,
    sites: Arc<Mutex<Sites>>,
    pool: Pool,
    host: Host,
) {
    let (mut io, mut out) = match Io::start(file, &path, Box::new(move |m| host.error(m))) {
        Ok(x) => x,
        Err(e) => {
            host.error(&e);
            // Keep taking batches so the guest never waits on a writer that is not there.
            while queue.pop().is_some() {}
            return;
        }
    };
    let mut enc = Encoder::new();
    while let Some(b) = queue.pop() {
        let known = enc.sites() as usize;
        {
            let s = lock(&sites);
            for site in s.list.get(known..).unwrap_or_default() {
                enc.define_site(*site);
            }
        }
        let [s, a, v] = &b.cols;
        let n = b.len.min(s.len()).min(a.len()).min(v.len());
        let need = enc.bound_records(n);
        if out.room() < need {
            io.send(&mut out, need);
        }
        out.pos += enc.encode_columns(b.vcpu, &s[..n], &a[..n], &v[..n], &mut out.buf[out.pos..]);
        lock(&pool).push_back(b.cols);
        if out.used() >= WRITE_BYTES {
            io.send(&mut out, 0);
        }
    }
    if let Err(e) = io.finish(out) {
        host.error(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes through `Io` as the encoder thread hands them over (pieces of odd sizes,
    /// some bigger than a write), into a regular file (direct writes and the last partial
    /// block) and into a device (plain writes).
    #[test]
    fn io_writes_every_byte_in_order() {
        let path = std::env::temp_dir().join(format!("memtrace-io-{}", std::process::id()));
        let path = path.to_str().unwrap().to_string();
        let data: Vec<u8> = (0..(3 * WRITE_BYTES + 12345) as u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        for target in [path.as_str(), "/dev/null"] {
            let mut f = File::create(target).unwrap();
            f.write_all(&trace::header()).unwrap();
            let errors = Arc::new(Mutex::new(Vec::new()));
            let e = errors.clone();
            let report: Report = Box::new(move |m| lock(&e).push(m.to_string()));
            let (mut io, mut out) = Io::start(f, target, report).unwrap();
            let mut at = 0;
            for (i, piece) in [1000, 5000, WRITE_BYTES + 777, 1, 3 << 20].iter().cycle().enumerate()
            {
                if at == data.len() {
                    break;
                }
                let n = (*piece).min(data.len() - at);
                if out.room() < n {
                    io.send(&mut out, n);
                }
                out.buf[out.pos..out.pos + n].copy_from_slice(&data[at..at + n]);
                out.pos += n;
                at += n;
                if out.used() >= WRITE_BYTES || i % 7 == 6 {
                    io.send(&mut out, 0);
                }
            }
            io.finish(out).unwrap();
            assert!(lock(&errors).is_empty(), "{:?}", lock(&errors));
        }
        let got = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(got.len(), trace::HEADER_BYTES + data.len());
        assert!(got[..trace::HEADER_BYTES] == trace::header());
        assert!(got[trace::HEADER_BYTES..] == data[..], "the bytes differ");
    }
}
