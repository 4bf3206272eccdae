//! `procon`: the operator's command line (see the `procon_cli` library).

fn main() -> std::process::ExitCode {
    procon_cli::main()
}
