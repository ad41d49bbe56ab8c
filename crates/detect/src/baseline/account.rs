//! The account hop, keyed by account: each account's first event (the
//! activation clock), its active regions (TH-001's unused region), the
//! error codes its calls got (TH-006's rare error code), and
//! the compute inventory — the region RunInstances and CreateFunction put
//! an instance or function in (TH-002's home region).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trailhound_proto::{ComputeHome, ComputeKind, EnrichedEvent, NoveltyKind, Observation};
use trailhound_state::{Batch, StateError, Store, Table};

use super::{enriched, region_of};
use crate::config::DetectionConfig;
use crate::seen::{SeenMap, record_shared_in};

/// The tables the account hop keeps.
pub const TABLES: &[&str] = &["accounts", "inventory"];

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AccountProfile {
    /// The account's earliest event: novelty detectors wait for the
    /// activation period of data after it.
    pub data_start_ms: i64,
    pub regions: SeenMap,
    pub error_codes: SeenMap,
}

#[derive(Debug)]
pub struct AccountBaseline {
    config: Arc<DetectionConfig>,
    accounts: Table<AccountProfile>,
    /// "account|instance id" or "account|lambda:function" → region.
    inventory: Table<String>,
}

impl AccountBaseline {
    pub fn new(config: Arc<DetectionConfig>, store: Option<Arc<Store>>) -> Self {
        Self {
            config,
            accounts: Table::new("accounts", store.clone()),
            inventory: Table::new("inventory", store),
        }
    }
}

impl super::ObservationHop for AccountBaseline {
    fn drain_into(&mut self, batch: &mut Batch) {
        self.accounts.drain_into(batch);
        self.inventory.drain_into(batch);
    }

    /// Add the account's facts and the inventory's home region to an
    /// observation from the profile hop.
    fn observe(&mut self, observation: &mut Observation) -> Result<(), StateError> {
        let window = (self.config.window_ms(), self.config.window_days());
        let reorder = self.config.reorder_ms();
        let enriched = enriched(&observation.enriched);
        self.learn_inventory(enriched)?;
        let principal = enriched
            .principal
            .as_ref()
            .expect("enriched events carry their principal");
        let t = enriched.event.as_ref().map_or(0, |e| e.event_time_ms);
        let region = region_of(enriched);
        let global = enriched.global_service;
        let account_id = principal.account_id.as_str();
        let compute = ComputeKind::try_from(principal.compute).unwrap_or(ComputeKind::None);
        let inventory_key = match compute {
            ComputeKind::Ec2 => Some([account_id, "|", &principal.session_name].concat()),
            ComputeKind::Lambda => Some([account_id, "|lambda:", &principal.session_name].concat()),
            ComputeKind::None => None,
        };

        if let Some(key) = inventory_key
            && let Some(home_region) = self.inventory.get(&key)?.cloned()
        {
            observation.compute_home = Some(ComputeHome {
                compute: compute as i32,
                home_region,
                source: "inventory".to_string(),
            });
        }

        let account = self.accounts.entry(account_id, || AccountProfile {
            data_start_ms: t,
            ..Default::default()
        })?;
        account.data_start_ms = account.data_start_ms.min(t);
        observation.region_unused_in_account =
            !global && record_shared_in(&mut account.regions, region, t, reorder, window).is_new;
        // An ErrorCode novelty's value (`values`) is the code itself.
        let error_code = enriched.event.as_ref().map_or("", |e| &e.error_code);
        if !error_code.is_empty() {
            // Codes are few (hundreds at most): drop those past the window.
            account.error_codes.retain(|_, s| s.live(t, window.0));
            let s = record_shared_in(&mut account.error_codes, error_code, t, reorder, window);
            observation
                .novelties
                .push(s.novelty(NoveltyKind::ErrorCode));
        }
        if let Some(facts) = observation.facts.as_mut() {
            facts.data_start_ms = account.data_start_ms;
        }
        Ok(())
    }
}

impl AccountBaseline {
    /// RunInstances and CreateFunction say where an instance or function lives.
    fn learn_inventory(&mut self, enriched: &EnrichedEvent) -> Result<(), StateError> {
        let event = enriched
            .event
            .as_ref()
            .expect("enriched events carry their event");
        if enriched.failed {
            return Ok(());
        }
        let account = &enriched.principal.as_ref().expect("principal").account_id;
        let names: Vec<String> = match event.event_name.as_str() {
            "RunInstances" => instance_ids(&event.response_elements_json),
            name if name.starts_with("CreateFunction") => {
                function_name(&event.request_parameters_json)
                    .map(|f| format!("lambda:{f}"))
                    .into_iter()
                    .collect()
            }
            _ => return Ok(()),
        };
        for name in names {
            *self
                .inventory
                .entry(&format!("{account}|{name}"), String::new)? = event.aws_region.clone();
        }
        Ok(())
    }
}

fn instance_ids(response_elements: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Response {
        #[serde(rename = "instancesSet")]
        instances_set: Option<Items>,
    }
    #[derive(Deserialize)]
    struct Items {
        #[serde(default)]
        items: Vec<Instance>,
    }
    #[derive(Deserialize)]
    struct Instance {
        #[serde(rename = "instanceId")]
        instance_id: Option<String>,
    }
    serde_json::from_str::<Response>(response_elements)
        .ok()
        .and_then(|r| r.instances_set)
        .map(|s| s.items.into_iter().filter_map(|i| i.instance_id).collect())
        .unwrap_or_default()
}

fn function_name(request_parameters: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Request {
        #[serde(rename = "functionName")]
        function_name: Option<String>,
    }
    let name = serde_json::from_str::<Request>(request_parameters)
        .ok()?
        .function_name?;
    // An ARN or partial ARN names the function last.
    Some(name.rsplit(':').next().unwrap_or(&name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_parsers() {
        let resp =
            r#"{"instancesSet":{"items":[{"instanceId":"i-0abc"},{"instanceId":"i-0def"}]}}"#;
        assert_eq!(instance_ids(resp), vec!["i-0abc", "i-0def"]);
        assert!(instance_ids("").is_empty());
        assert_eq!(
            function_name(r#"{"functionName":"arn:aws:lambda:eu-west-1:1:function:fn"}"#)
                .as_deref(),
            Some("fn")
        );
    }
}
