//! The `procon` command line as the integration tests run it: cargo hands a test the path of
//! its own package's binaries only (`CARGO_BIN_EXE_*`), and `procon` itself belongs to
//! `procon-cli`.

fn main() -> std::process::ExitCode {
    procon_cli::main()
}
