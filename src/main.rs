// mimalloc instead of glibc's malloc: `detect` allocates and frees millions of
// small strings on both cores (see BENCHMARKS.md, issue 14).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    channel_sync::cli::main()
}
