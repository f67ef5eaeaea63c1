//! The `beckn-adapter` binary: the command line of `cli/` on the library.

mod cli;

/// mimalloc instead of the system allocator: a request allocates and frees many small JSON
/// values across threads, where glibc's malloc took a tenth to a fifth of the CPU (measured,
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    return_freed_memory_sooner();
    cli::main()
}

/// `mi_option_purge_delay` of mimalloc's `mi_option_t` (15 in both its v2 and v3 headers;
/// the sys crate leaves it unnamed). The count below fails the build if a new mimalloc
/// reorders its options, so that the index is checked again.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const _: () = assert!(libmimalloc_sys::_mi_option_last == 47);

/// How long mimalloc keeps memory freed before it gives it back to the system, in ms.
const PURGE_AFTER_MS: std::ffi::c_long = 50;

/// Under load the ACK path frees whole pages of request memory many times a second; by
/// default mimalloc keeps them resident for a second first, about 4.5 MB of peak RSS at 50
/// connections. 50 ms keeps what is reused at once and returns the rest (docs/benchmarks.md,
/// "Memory"); 0 saved 8 MB more for 5–10% more CPU per request. Unlike the huge-page advice,
/// this option is read whenever memory is freed, so setting it here, before any other thread
/// runs, holds for the whole process. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn return_freed_memory_sooner() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        || std::env::var_os("MIMALLOC_RESET_DELAY").is_some()
    {
        return;
    }
    // SAFETY: sets one integer option; called before any other thread exists (the function is
    // not thread safe), with an index checked against the library's option count above.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_AFTER_MS) };
}
