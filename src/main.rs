fn main() -> std::process::ExitCode {
    mcr::cli::main()
}
