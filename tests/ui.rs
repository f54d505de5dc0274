//! Compile-time behaviour of the macros: what compiles, and the errors for what does not.
//!
//! The expected errors (`tests/ui/fail/*.stderr`) are pinned to the project's one stable
//! toolchain; regenerate them with `TRYBUILD=overwrite cargo test --test ui` after an upgrade
//! and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
