//! The `beckn-adapter` binary: the command line of `cli/` on the library.

mod cli;

/// mimalloc instead of the system allocator: a request allocates and frees many small JSON
/// values across threads, where glibc's malloc took a tenth to a fifth of the CPU (measured,
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cli::main()
}
