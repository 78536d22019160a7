//! Compile-time behaviour of the macros (`#[derive(Event)]`, `#[command]`,
//! `#[command_handler]`, `#[derive(DomainError)]`): what compiles and runs,
//! and the exact errors every mistake produces.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
