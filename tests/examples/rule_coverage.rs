//! Writes docs/rule-coverage.md: agreement with Panther's CloudTrail rule tests.
//! `cargo run -p trailhound-e2e --example rule_coverage > docs/rule-coverage.md`

#![allow(clippy::print_stdout)] // a program whose output is its report

fn main() {
    let coverage = trailhound_e2e::rule_coverage::evaluate();
    print!("{}", trailhound_e2e::rule_coverage::report(&coverage));
}
