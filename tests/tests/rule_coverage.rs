//! Agreement with Panther's labelled CloudTrail rule tests never drops below
//! its measured 93.75 % (the goal is 95 %; the four disagreements are
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
        agree * 10_000 >= compared * 9_375,
        "agreement {agree}/{compared} dropped below 93.75 %"
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
