//! The `procon` command line as a service with an Avro model runs it: its own binary, with its
//! models linked in, so `procon schemas list|register|check` has schemas to work on (the
//! generic `procon-test-cli` declares no model, as the `procon` binary).

#[allow(dead_code)]
#[path = "../common/avro_model.rs"]
mod avro_model;

fn main() -> std::process::ExitCode {
    procon_cli::main()
}
