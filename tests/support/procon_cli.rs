//! The `procon` command line as the integration tests run it: cargo hands a test the path of
//! its own package's binaries only (`CARGO_BIN_EXE_*`), and `procon` itself belongs to
//! `procon-cli`.

// Linked in so `schemas list|register|check` have an Avro model, as a service's own binary
// would have its models.
#[allow(dead_code)]
#[path = "../common/avro_model.rs"]
mod avro_model;

fn main() -> std::process::ExitCode {
    procon_cli::main()
}
