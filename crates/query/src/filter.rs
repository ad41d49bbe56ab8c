//! Which findings a `ListFindings` or `WatchFindings` call asks for.

use trailhound_proto::{Finding, ListFindingsRequest, Severity};

/// The filters of a request, checked; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    pub account_id: String,
    pub principal: String,
    pub detector: String,
    pub min_severity: Severity,
    /// Findings active at or after this event time (their last event).
    pub since_ms: Option<i64>,
    /// Findings active before this event time (their first event).
    pub until_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("since_ms {since} is after until_ms {until}")]
    EmptyWindow { since: i64, until: i64 },
    #[error("min_severity {0} is not a severity")]
    UnknownSeverity(i32),
}

impl FindingFilter {
    pub fn from_request(request: &ListFindingsRequest) -> Result<Self, FilterError> {
        let min_severity = Severity::try_from(request.min_severity)
            .map_err(|_| FilterError::UnknownSeverity(request.min_severity))?;
        // 0 is proto3's unset: no bound.
        let since_ms = (request.since_ms != 0).then_some(request.since_ms);
        let until_ms = (request.until_ms != 0).then_some(request.until_ms);
        if let (Some(since), Some(until)) = (since_ms, until_ms)
            && since > until
        {
            return Err(FilterError::EmptyWindow { since, until });
        }
        Ok(Self {
            account_id: request.account_id.clone(),
            principal: request.principal.clone(),
            detector: request.detector.clone(),
            min_severity,
            since_ms,
            until_ms,
        })
    }

    pub fn matches(&self, finding: &Finding) -> bool {
        (self.account_id.is_empty() || finding.account_id == self.account_id)
            && (self.principal.is_empty() || finding.principal == self.principal)
            && (self.detector.is_empty() || finding.detector == self.detector)
            && finding.severity() >= self.min_severity
            && self
                .since_ms
                .is_none_or(|since| finding.last_event_ms >= since)
            && self
                .until_ms
                .is_none_or(|until| finding.first_event_ms < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(detector: &str, severity: Severity, first: i64, last: i64) -> Finding {
        let mut f = Finding {
            detector: detector.into(),
            account_id: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:user/alice".into(),
            first_event_ms: first,
            last_event_ms: last,
            ..Default::default()
        };
        f.set_severity(severity);
        f
    }

    #[test]
    fn each_field_narrows_the_findings() {
        let f = finding("TH-002", Severity::High, 1_000, 5_000);
        assert!(FindingFilter::default().matches(&f));
        let request = |r: ListFindingsRequest| FindingFilter::from_request(&r).unwrap();
        let base = ListFindingsRequest::default;
        assert!(
            request(ListFindingsRequest {
                detector: "TH-002".into(),
                ..base()
            })
            .matches(&f)
        );
        assert!(
            !request(ListFindingsRequest {
                detector: "TH-001".into(),
                ..base()
            })
            .matches(&f)
        );
        assert!(
            !request(ListFindingsRequest {
                account_id: "999".into(),
                ..base()
            })
            .matches(&f)
        );
        assert!(
            !request(ListFindingsRequest {
                principal: "arn:x".into(),
                ..base()
            })
            .matches(&f)
        );
        let critical = Severity::Critical as i32;
        assert!(
            !request(ListFindingsRequest {
                min_severity: critical,
                ..base()
            })
            .matches(&f)
        );
        let high = Severity::High as i32;
        assert!(
            request(ListFindingsRequest {
                min_severity: high,
                ..base()
            })
            .matches(&f)
        );
    }

    #[test]
    fn a_window_keeps_findings_active_in_it() {
        let f = finding("TH-002", Severity::High, 1_000, 5_000);
        let window = |since_ms, until_ms| {
            FindingFilter::from_request(&ListFindingsRequest {
                since_ms,
                until_ms,
                ..Default::default()
            })
            .unwrap()
        };
        assert!(
            window(5_000, 0).matches(&f),
            "its last event is in the window"
        );
        assert!(!window(5_001, 0).matches(&f));
        assert!(
            window(0, 1_001).matches(&f),
            "its first event is in the window"
        );
        assert!(!window(0, 1_000).matches(&f), "until is exclusive");
        assert!(window(2_000, 3_000).matches(&f), "active across the window");
    }

    #[test]
    fn bad_requests_are_refused() {
        let r = ListFindingsRequest {
            since_ms: 10,
            until_ms: 5,
            ..Default::default()
        };
        assert_eq!(
            FindingFilter::from_request(&r),
            Err(FilterError::EmptyWindow {
                since: 10,
                until: 5
            })
        );
        let r = ListFindingsRequest {
            min_severity: 42,
            ..Default::default()
        };
        assert_eq!(
            FindingFilter::from_request(&r),
            Err(FilterError::UnknownSeverity(42))
        );
    }
}
