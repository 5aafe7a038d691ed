//! The `blockscope` command.
fn main() {
    std::process::exit(0)
}
