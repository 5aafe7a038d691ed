//! Every knob in one place: CLI options and `BLOCKSCOPE_*` environment variables are parsed
//! once into `Config`.

/// Which execution tier runs guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tier {
    /// IR interpreter only.
    Interp,
    /// Compile every block before running it.
    Jit,
    /// Interpret until hot, then compile (default).
    #[default]
    Auto,
}

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Execution tier.
    pub tier: Tier,
    /// Executions before a block is compiled in `Auto`.
    pub hot_threshold: u32,
    /// Maximum guest instructions per block.
    pub max_block_insns: usize,
    /// Print each translated block (guest disassembly and IR) to stderr.
    pub trace_translate: bool,
    /// Log syscalls to stderr, strace-like.
    pub strace: bool,
    /// Print the engine's counters (blocks translated, compiled, ...) to stderr at exit.
    pub stats: bool,
    /// `--plugin` specs (`path[,k=v]...`), in command-line order.
    pub plugins: Vec<String>,
    /// Bytes of compiled code kept before the code cache is flushed and refilled.
    pub jit_cache_size: usize,
    /// Chained transfers compiled code may make before returning to the run loop (which
    /// then checks interrupts and invalidations, and builds a hot region there).
    pub jit_chain_budget: u64,
    /// Append every compiled block to `/tmp/perf-PID.map` (host address, size, guest pc)
    /// so `perf report` names compiled code by guest address.
    pub perf_map: bool,
    /// Expand REP string instructions, one element per run (`frontend::LiftOpts`), even
    /// when no plugin asks for it (a plugin that does turns it on for its run).
    pub expand_rep: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tier: Tier::Auto,
            hot_threshold: 256,
            max_block_insns: 64,
            trace_translate: false,
            strace: false,
            stats: false,
            plugins: Vec::new(),
            jit_cache_size: 256 << 20,
            jit_chain_budget: 1 << 14,
            perf_map: false,
            expand_rep: false,
        }
    }
}

/// Directories searched for `--plugin NAME` after the executable's own directory:
/// `BLOCKSCOPE_PLUGIN_PATH` (colon-separated).
pub fn plugin_search_path() -> Vec<std::path::PathBuf> {
    std::env::var("BLOCKSCOPE_PLUGIN_PATH")
        .map(|v| v.split(':').filter(|s| !s.is_empty()).map(Into::into).collect())
        .unwrap_or_default()
}
