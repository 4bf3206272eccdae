//! Pins every compile error of procon's macros (run `TRYBUILD=overwrite cargo test --test ui` to accept new output).

#[test]
fn macro_errors_are_pinned() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/outbox/*.rs");
    t.compile_fail("tests/ui/event_handler/*.rs");
    t.compile_fail("tests/ui/materialize/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
