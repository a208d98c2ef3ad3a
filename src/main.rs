fn main() -> std::process::ExitCode {
    channel_sync::cli::main()
}
