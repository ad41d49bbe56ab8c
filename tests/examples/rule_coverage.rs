//! Writes docs/rule-coverage.md: agreement with Panther's CloudTrail rule tests.
//! `cargo run -p trailhound-e2e --example rule_coverage > docs/rule-coverage.md`

fn main() {
    let verdicts = trailhound_e2e::rule_coverage::evaluate();
    print!("{}", trailhound_e2e::rule_coverage::report(&verdicts));
}
