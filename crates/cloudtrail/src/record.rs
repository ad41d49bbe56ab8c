//! The serde model of one CloudTrail record, lenient where real logs and
//! test corpora vary (nulls, missing blocks, `"true"` for `true`), and its
//! conversion to the typed [`CloudTrailEvent`] message.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use sonic_rs::LazyValue;
use trailhound_proto::{CloudTrailEvent, UserIdentity};

use crate::time::parse_event_time;

/// One record as it appears in a log. The wrappers CloudTrail records come
/// in deserialise into the same struct: EventBridge envelopes (the record
/// in `detail`), Event history's events (in `CloudTrailEvent`), CloudWatch
/// Logs events (in `message`) and the payloads of CloudWatch Logs
/// subscriptions (`logEvents`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<'a> {
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    /// Borrowed from the input unless escaped: it is only read, to the
    /// event's time.
    #[serde(borrow)]
    pub event_time: Option<Borrowed<'a>>,
    pub event_source: Option<String>,
    pub event_name: Option<String>,
    pub aws_region: Option<String>,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub read_only: Option<bool>,
    pub recipient_account_id: Option<String>,
    pub event_type: Option<String>,
    pub user_identity: Option<RecordIdentity>,
    #[serde(borrow)]
    pub request_parameters: Option<LazyValue<'a>>,
    #[serde(borrow)]
    pub response_elements: Option<LazyValue<'a>>,
    pub vpc_endpoint_id: Option<String>,
    /// EventBridge: "AWS API Call via CloudTrail" and friends.
    #[serde(rename = "detail-type")]
    pub detail_type: Option<String>,
    #[serde(borrow)]
    pub detail: Option<LazyValue<'a>>,
    /// Event history (`aws cloudtrail lookup-events`): the record as JSON
    /// text in a string.
    #[serde(rename = "CloudTrailEvent")]
    pub cloudtrail_event: Option<String>,
    /// A CloudWatch Logs event of a trail's log group: the record as JSON
    /// text.
    pub message: Option<String>,
    /// A CloudWatch Logs subscription's payload: `DATA_MESSAGE` with its
    /// events, or `CONTROL_MESSAGE`, CloudWatch's check of the destination.
    pub message_type: Option<String>,
    #[serde(borrow)]
    pub log_events: Option<LazyValue<'a>>,
}

/// A string borrowed from the input when it has no escapes. A newtype
/// because serde borrows a `Cow` only outside an `Option`.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Borrowed<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Deref for Borrowed<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordIdentity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub principal_id: Option<String>,
    pub user_name: Option<String>,
    pub access_key_id: Option<String>,
    pub invoked_by: Option<String>,
    pub identity_provider: Option<String>,
    pub session_context: Option<SessionContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    pub session_issuer: Option<SessionIssuer>,
    pub attributes: Option<SessionAttributes>,
    pub ec2_role_delivery: Option<String>,
    pub source_identity: Option<String>,
    pub web_id_federation_data: Option<WebIdFederation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAttributes {
    #[serde(default, deserialize_with = "lenient_bool")]
    pub mfa_authenticated: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebIdFederation {
    pub federated_provider: Option<String>,
}

/// `true`, `"true"`, `"True"` and null all occur for CloudTrail booleans;
/// another string reads as unknown. A visitor rather than an untagged enum,
/// which would buffer the value and build an error for every string.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct Lenient;
    impl<'de> Visitor<'de> for Lenient {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean, \"true\" or \"false\"")
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok(Some(b))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(if s.eq_ignore_ascii_case("true") {
                Some(true)
            } else if s.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            })
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_option(Lenient)
}

/// Why a record cannot be used. The message names the missing or bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a CloudTrail event: missing {0}")]
    Missing(&'static str),
    #[error("eventTime {0:?} is not a time")]
    BadTime(String),
    #[error(
        "a CloudTrail Insights event (AWS's own note of an unusual call or error rate), not a call"
    )]
    Insight,
}

impl Record<'_> {
    /// Check that the record is an event and read its time, before
    /// [`Record::into_event`] moves its fields.
    pub fn event_time_ms(&self) -> Result<i64, RecordError> {
        let time = self
            .event_time
            .as_deref()
            .ok_or(RecordError::Missing("eventTime"))?;
        let ms = parse_event_time(time).ok_or_else(|| RecordError::BadTime(time.to_string()))?;
        for (field, present) in [
            ("eventSource", self.event_source.is_some()),
            ("eventName", self.event_name.is_some()),
            ("userIdentity", self.user_identity.is_some()),
        ] {
            if !present && self.event_type.as_deref() == Some("AwsCloudTrailInsight") {
                return Err(RecordError::Insight);
            }
            if !present {
                return Err(RecordError::Missing(field));
            }
        }
        Ok(ms)
    }

    /// Convert to the typed message; `event_time_ms` is what
    /// [`Record::event_time_ms`] read. `raw` is the record's JSON, used for
    /// a stable derived eventID when the record has none (rule test corpora).
    pub fn into_event(self, event_time_ms: i64, raw: &str, keep_raw: bool) -> CloudTrailEvent {
        let identity = self.user_identity.unwrap_or_default();
        let event_id = self.event_id.unwrap_or_else(|| derived_event_id(raw));
        let session = identity.session_context.unwrap_or_default();
        let issuer = session.session_issuer.unwrap_or_default();
        let user_identity = UserIdentity {
            r#type: identity.kind.unwrap_or_default(),
            arn: identity.arn.unwrap_or_default(),
            account_id: identity.account_id.unwrap_or_default(),
            principal_id: identity.principal_id.unwrap_or_default(),
            user_name: identity.user_name.unwrap_or_default(),
            access_key_id: identity.access_key_id.unwrap_or_default(),
            invoked_by: identity.invoked_by.unwrap_or_default(),
            session_issuer_arn: issuer.arn.unwrap_or_default(),
            session_issuer_type: issuer.kind.unwrap_or_default(),
            session_issuer_account_id: issuer.account_id.unwrap_or_default(),
            mfa_authenticated: session
                .attributes
                .and_then(|a| a.mfa_authenticated)
                .unwrap_or(false),
            ec2_role_delivery: session.ec2_role_delivery.is_some(),
            identity_provider: identity
                .identity_provider
                .or(session
                    .web_id_federation_data
                    .and_then(|w| w.federated_provider))
                .unwrap_or_default(),
            source_identity: session.source_identity.unwrap_or_default(),
        };
        CloudTrailEvent {
            event_id,
            event_time_ms,
            event_source: self.event_source.unwrap_or_default(),
            event_name: self.event_name.unwrap_or_default(),
            aws_region: self.aws_region.unwrap_or_default(),
            source_ip: self.source_ip_address.unwrap_or_default(),
            user_agent: self.user_agent.unwrap_or_default(),
            error_code: self.error_code.unwrap_or_default(),
            error_message: self.error_message.unwrap_or_default(),
            read_only: self.read_only,
            recipient_account_id: self.recipient_account_id.unwrap_or_default(),
            event_type: self.event_type.unwrap_or_default(),
            user_identity: Some(user_identity),
            request_parameters_json: self
                .request_parameters
                .map(|r| r.as_raw_str().to_owned())
                .unwrap_or_default(),
            response_elements_json: self
                .response_elements
                .map(|r| r.as_raw_str().to_owned())
                .unwrap_or_default(),
            vpc_endpoint_id: self.vpc_endpoint_id.unwrap_or_default(),
            origin: String::new(),
            raw_json: if keep_raw {
                raw.as_bytes().to_vec()
            } else {
                Vec::new()
            },
        }
    }
}

/// A stable id for records without `eventID`: the same record always gets
/// the same id, so re-reading it deduplicates as a real id would.
fn derived_event_id(raw: &str) -> String {
    format!(
        "derived-{:032x}",
        xxhash_rust::xxh3::xxh3_128(raw.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_is_borrowed_from_the_input_unless_escaped() {
        let time = |raw: &'static str| {
            let record: Record<'static> = sonic_rs::from_str(raw).unwrap();
            record.event_time.map(|t| t.0)
        };
        let plain = time(r#"{"eventTime":"2024-01-01T00:00:00Z"}"#);
        assert!(matches!(plain, Some(Cow::Borrowed("2024-01-01T00:00:00Z"))));
        let escaped = time(r#"{"eventTime":"2024-01-01T00:00:00\u005a"}"#);
        assert!(matches!(escaped, Some(Cow::Owned(t)) if t == "2024-01-01T00:00:00Z"));
    }
}
