//! A custom blockscope plugin, step by step: count the calls to `malloc` and histogram
//! their sizes. See README.md in this directory for the walkthrough.
#![forbid(unsafe_code)]

use blockscope_plugin_api::{
    abi::ArgSpec, declare_plugin, Args, Call, Host, Injector, Plugin, Reg, TbView,
};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Buckets of the size histogram: sizes below 2^0, 2^1, ... 2^31, and the rest.
const BUCKETS: usize = 33;

/// Step 1: the plugin's state. One value serves every guest thread, so it uses atomics.
pub struct MallocCount {
    host: Host,
    symbol: String,
    out: Option<String>,
    calls: AtomicU64,
    bytes: AtomicU64,
    histogram: [AtomicU64; BUCKETS],
}

/// Step 4: the callback. It runs on the guest's thread each time the injected call
/// executes; `c.args[0]` is the value of `rdi` (malloc's size argument) at that moment.
fn on_malloc(p: &MallocCount, c: &Call) {
    let size = c.args[0];
    p.calls.fetch_add(1, Relaxed);
    p.bytes.fetch_add(size, Relaxed);
    let bucket = (64 - size.leading_zeros() as usize).min(BUCKETS - 1);
    p.histogram[bucket].fetch_add(1, Relaxed);
}

impl Plugin for MallocCount {
    const NAME: &'static str = "malloc-count";
    const DESCRIPTION: &'static str = "counts calls to malloc and histograms their sizes";
    // Step 2: declare the arguments; blockscope refuses any other key.
    const ARGS: &'static [ArgSpec] = &[
        ArgSpec::new("symbol", "malloc", "function to count (its first argument is the size)"),
        ArgSpec::new("out", "", "write the report to this file (default: stderr)"),
    ];

    fn install(host: Host, args: &Args) -> Result<Self, String> {
        Ok(MallocCount {
            host,
            symbol: args.get("symbol").unwrap_or("malloc").to_string(),
            out: args.get("out").map(str::to_string),
            calls: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            histogram: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// Step 3: at translation, find the block that starts the function and inject a call
    /// to `on_malloc` at its entry, passing `rdi`.
    fn translate(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        let Some(sym) = self.host.symbolize(tb.pc()) else { return };
        if sym.addr != tb.pc() || sym.name != self.symbol {
            return;
        }
        let mut e = inj.block_entry();
        let size = e.reg(Reg::RDI);
        e.call(on_malloc, 0, &[size]);
    }

    /// Step 5: report at exit.
    fn exit(&self) {
        let mut s = format!(
            "{}: {} calls, {} bytes\n",
            self.symbol,
            self.calls.load(Relaxed),
            self.bytes.load(Relaxed)
        );
        for (i, b) in self.histogram.iter().enumerate() {
            let n = b.load(Relaxed);
            if n > 0 {
                let lo = if i == 0 { 0 } else { 1u64 << (i - 1) };
                s.push_str(&format!("  size {lo:>10}..: {n}\n"));
            }
        }
        match &self.out {
            Some(path) => {
                if let Err(e) = std::fs::write(path, &s) {
                    self.host.error(&format!("cannot write {path}: {e}"));
                }
            }
            None => eprint!("{s}"),
        }
    }
}

// Step 6: export it.
declare_plugin!(MallocCount);
