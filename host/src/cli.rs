//! The `blockscope` command line (clap). Parsing and error printing only; the work is
//! done by the library (`blockscope::user::run`).
//!
//! Exit status of `blockscope run`: the guest's own exit status; if the guest dies of
//! signal N, blockscope dies of the same signal (its parent sees the same wait status as
//! for the native program, a shell prints 128+N); 2 when blockscope cannot start the
//! program or the command line is wrong, with one line `blockscope: ...` on stderr.

use blockscope::config::{self, Config, Tier};
use blockscope::plugin;
use blockscope::user::{self, Launch};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;

const EXIT_STATUS: &str = "\
Exit status of `blockscope run`:
  N        the guest exited with status N
  128+N    (as a shell shows it) the guest died of signal N: blockscope kills itself
           with the same signal, so the wait status is the native one (139 = SIGSEGV,
           134 = SIGABRT, 132 = SIGILL, also for unimplemented instructions)
  2        blockscope could not start the program (missing, unreadable, not an ELF,
           not x86-64) or the command line is invalid, or a --plugin cannot be loaded
           (missing, not a plugin, other ABI version, unknown argument, install
           failed); one line on stderr
  3        a plugin failed while the guest ran (panic, rejected injection); it is
           named on stderr and the other plugins still wrote their outputs";

/// blockscope: an x86-64 emulator built for instrumentation.
#[derive(Parser, Debug)]
#[command(name = "blockscope", version, about, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a Linux x86-64 program under emulation (user mode, like qemu-x86_64).
    #[command(after_help = EXIT_STATUS)]
    Run(RunArgs),
    /// List the shipped plugins with their arguments.
    Plugins,
    /// Print or summarize a trace written by the memtrace plugin.
    #[command(disable_help_flag = true)]
    Memtrace {
        /// [--summary] [--limit N] TRACE_FILE
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TierArg {
    /// IR interpreter only.
    Interp,
    /// Compile every block before running it.
    Jit,
    /// Interpret until hot, then compile.
    Auto,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Execution tier.
    #[arg(long, value_enum, default_value = "auto")]
    tier: TierArg,
    /// Load a plugin: PATH[,key=value]... (repeatable).
    #[arg(long = "plugin", value_name = "SPEC")]
    plugins: Vec<String>,
    /// Print each translated block (guest disassembly and IR) to stderr.
    #[arg(long)]
    trace_translate: bool,
    /// Log every guest syscall (number, arguments, result) to stderr.
    #[arg(long)]
    strace: bool,
    /// Print the engine's counters to stderr when the guest ends (blocks translated,
    /// interpreted runs, blocks compiled, entries into compiled code, invalidations).
    #[arg(long)]
    stats: bool,
    /// `--tier auto`: runs of a block in the interpreter before it is compiled.
    #[arg(long, value_name = "N", default_value_t = Config::default().hot_threshold,
          value_parser = clap::value_parser!(u32).range(1..))]
    hot_threshold: u32,
    /// Most guest instructions in one translation block.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_block_insns as u32,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    max_block_insns: u32,
    /// Size of the JIT code cache in MiB; when full it is flushed and refilled.
    #[arg(long, value_name = "MIB", default_value_t = (Config::default().jit_cache_size >> 20) as u32,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    jit_cache_mib: u32,
    /// Chained block transfers compiled code makes before returning to the run loop
    /// (which then checks signals and invalidations, and builds hot regions).
    #[arg(long, value_name = "N", default_value_t = Config::default().jit_chain_budget,
          value_parser = clap::value_parser!(u64).range(1..))]
    jit_chain_budget: u64,
    /// Append each compiled block to /tmp/perf-PID.map (host address, size, guest pc), so
    /// `perf report` names compiled code by the guest address it came from.
    #[arg(long)]
    perf_map: bool,
    /// argv[0] given to the program (default: PROG as written).
    #[arg(long, value_name = "NAME")]
    argv0: Option<OsString>,
    /// The program (looked up in PATH like a shell does) and its arguments.
    #[arg(value_name = "PROG [ARGS]", required = true, trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    command: Vec<OsString>,
}

/// Parse the command line and run; returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Plugins => {
            let exe_dir = exe_dir();
            print!("{}", plugin::list_shipped(exe_dir.as_deref(), &config::plugin_search_path()));
            0
        }
        Cmd::Memtrace { args } => {
            let stdout = std::io::stdout();
            match plugin::memtrace::memtrace_main(&args, &mut stdout.lock()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("blockscope: memtrace: {e}");
                    2
                }
            }
        }
    }
}

/// The directory of the blockscope executable (plugins are looked up there first).
fn exe_dir() -> Option<std::path::PathBuf> {
    std::env::current_exe().ok()?.parent().map(|p| p.to_path_buf())
}

/// Load and install the `--plugin` options; one line and exit status 2 on error.
fn load_plugins(specs: &[String]) -> Result<std::sync::Arc<plugin::Plugins>, i32> {
    let fail = |e: plugin::PluginError| {
        eprintln!("blockscope: {e}");
        e.exit_status()
    };
    let specs: Vec<plugin::PluginSpec> =
        specs.iter().map(|s| plugin::parse_spec(s)).collect::<Result<_, _>>().map_err(fail)?;
    let p = plugin::Plugins::load(&specs, exe_dir().as_deref(), &config::plugin_search_path())
        .map_err(fail)?;
    Ok(std::sync::Arc::new(p))
}

fn run(a: RunArgs) -> i32 {
    let config = Config {
        tier: match a.tier {
            TierArg::Interp => Tier::Interp,
            TierArg::Jit => Tier::Jit,
            TierArg::Auto => Tier::Auto,
        },
        trace_translate: a.trace_translate,
        strace: a.strace,
        stats: a.stats,
        hot_threshold: a.hot_threshold,
        max_block_insns: a.max_block_insns as usize,
        jit_cache_size: (a.jit_cache_mib as usize) << 20,
        jit_chain_budget: a.jit_chain_budget,
        perf_map: a.perf_map,
        plugins: a.plugins,
        // Plugins that instrument memory accesses ask for it (`expand_rep_strings`).
        expand_rep: false,
    };
    let plugins = match load_plugins(&config.plugins) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let mut cmd = a.command.into_iter();
    let Some(prog) = cmd.next() else {
        eprintln!("blockscope: missing program");
        return 2;
    };
    let launch = Launch { prog: prog.clone(), args: cmd.collect(), argv0: a.argv0 };
    match user::run_with_plugins(config, &launch, plugins) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("blockscope: {}: {e}", prog.to_string_lossy());
            2
        }
    }
}
