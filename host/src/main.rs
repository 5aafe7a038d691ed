//! The `blockscope` command (see `cli`).
mod cli;

fn main() {
    std::process::exit(cli::main())
}
