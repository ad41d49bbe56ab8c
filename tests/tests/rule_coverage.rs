//! Agreement with Panther's labelled CloudTrail rule tests stays at or above
//! the 95 % goal (measured 77 of 81, 95.1 %; the four disagreements are
//! explained, two of them by design), every disagreement is explained, and
//! docs/rule-coverage.md is current.

use trailhound_e2e::rule_coverage::{agreement, evaluate, explanation, report};

#[test]
fn agrees_with_panther_and_the_report_is_current() {
    let coverage = evaluate();
    let verdicts = &coverage.verdicts;
    let (agree, compared) = agreement(verdicts);
    assert!(compared > 0);
    assert!(
        agree * 100 >= compared * 95,
        "agreement {agree}/{compared} dropped below 95 %"
    );
    for v in verdicts.iter().filter(|v| v.fired != v.case.expected) {
        assert!(
            explanation(&v.case.rule, &v.case.name).is_some(),
            "unexplained disagreement: {} / {}",
            v.case.rule,
            v.case.name
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rule-coverage.md");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == report(&coverage),
        "docs/rule-coverage.md is out of date: run `cargo run -p trailhound-e2e --example rule_coverage > docs/rule-coverage.md`"
    );
}
