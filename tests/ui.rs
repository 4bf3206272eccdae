//! Pins every compile error of procon's macros (run `TRYBUILD=overwrite cargo test --test ui` to accept new output).
//! The compile-pass cases (`tests/ui/pass/`) are test targets of their own (Cargo.toml): with
//! only compile-fail cases trybuild checks instead of building, so its second target directory
//! holds no code.

#[test]
fn macro_errors_are_pinned() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/outbox/*.rs");
    t.compile_fail("tests/ui/event_handler/*.rs");
    t.compile_fail("tests/ui/materialize/*.rs");
}
