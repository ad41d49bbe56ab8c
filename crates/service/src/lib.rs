//! What every Trailhound service shares: its configuration (a TOML file,
//! then environment variables, then flags), logging, shutdown on SIGTERM or
//! Ctrl-C, and its RocksDB store. A service is a library `run(config,
//! shutdown)` and a `main.rs` that calls [`main`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use trailhound_alert::AlertConfig;
use trailhound_detect::DetectionConfig;
use trailhound_enrich::EnricherConfig;
use trailhound_pipeline::Stage;
use trailhound_pipeline::nats::{Hop, HopSettings, HopStats, Ownership, StreamSettings, run_hop};
use trailhound_query::QueryConfig;
use trailhound_sinks::SinkConfig;
use trailhound_state::{Layout, StateError, Store};
use trailhound_telemetry::{Metrics, Readiness};

/// Flags (and their environment variables) every service takes; each
/// overrides the same setting of the `--config` file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServiceArgs {
    /// TOML configuration file (see deploy/trailhound.example.toml).
    #[arg(long, env = "TRAILHOUND_CONFIG")]
    pub config: Option<PathBuf>,
    /// NATS server URL.
    #[arg(long, env = "TRAILHOUND_NATS_URL")]
    pub nats_url: Option<String>,
    /// Partitions of (account, principal): the same for every service, fixed
    /// for the life of the deployment.
    #[arg(long, env = "TRAILHOUND_PARTITIONS")]
    pub partitions: Option<u32>,
    /// This replica's index; by default the ordinal that ends the host name
    /// (a Kubernetes StatefulSet pod), else 0.
    #[arg(long, env = "TRAILHOUND_REPLICA")]
    pub replica: Option<u32>,
    /// Replicas of this stage.
    #[arg(long, env = "TRAILHOUND_REPLICAS")]
    pub replicas: Option<u32>,
    /// RocksDB state directory of a stateful service.
    #[arg(long, env = "TRAILHOUND_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Serve /healthz, /readyz and /metrics on this address (e.g. 0.0.0.0:9464).
    #[arg(long, env = "TRAILHOUND_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// The configuration file of the services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub nats_url: String,
    pub partitions: u32,
    pub replica: Option<u32>,
    pub replicas: u32,
    pub state_dir: PathBuf,
    /// Entries each state table keeps in memory (the rest stay in RocksDB).
    pub state_cache_entries: usize,
    /// Where /healthz, /readyz and /metrics are served; unset, nowhere.
    pub http_addr: Option<SocketAddr>,
    pub streams: StreamSettings,
    pub hop: HopSettings,
    pub enrich: EnricherConfig,
    pub detection: DetectionConfig,
    pub alert: AlertConfig,
    pub query: QueryConfig,
    /// Sinks the alert service delivers findings to (`[[sink]]`).
    pub sink: Vec<SinkConfig>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_string(),
            partitions: 16,
            replica: None,
            replicas: 1,
            state_dir: PathBuf::from("trailhound-state"),
            state_cache_entries: trailhound_state::DEFAULT_CACHE_ENTRIES,
            http_addr: None,
            streams: StreamSettings::default(),
            hop: HopSettings::default(),
            enrich: EnricherConfig::default(),
            detection: DetectionConfig::default(),
            alert: AlertConfig::default(),
            query: QueryConfig::default(),
            sink: Vec::new(),
        }
    }
}

impl ServiceConfig {
    /// The file named by `--config`, if any, with the flags applied.
    pub fn load(args: &ServiceArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("config {}", path.display()))?
            }
            None => Self::default(),
        };
        if let Some(url) = &args.nats_url {
            config.nats_url = url.clone();
        }
        if let Some(n) = args.partitions {
            config.partitions = n;
        }
        if let Some(r) = args.replica {
            config.replica = Some(r);
        }
        if let Some(r) = args.replicas {
            config.replicas = r;
        }
        if let Some(dir) = &args.state_dir {
            config.state_dir = dir.clone();
        }
        if let Some(addr) = args.http_addr {
            config.http_addr = Some(addr);
        }
        anyhow::ensure!(config.partitions > 0, "partitions must be at least 1");
        anyhow::ensure!(config.replicas > 0, "replicas must be at least 1");
        let ownership = config.ownership();
        anyhow::ensure!(
            ownership.replica < ownership.replicas,
            "replica {} is not below replicas {}",
            ownership.replica,
            ownership.replicas
        );
        Ok(config)
    }

    pub fn ownership(&self) -> Ownership {
        let replica = self.replica.unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .and_then(|h| ordinal(&h))
                .unwrap_or(0)
        });
        Ownership {
            replica,
            replicas: self.replicas,
        }
    }

    /// Connect to NATS and create or update the streams.
    pub async fn connect(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let js = trailhound_pipeline::nats::connect(&self.nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {}", self.nats_url))?;
        trailhound_pipeline::nats::init_streams(&js, &self.streams)
            .await
            .map_err(|e| anyhow::anyhow!("creating the streams on {}: {e}", self.nats_url))?;
        Ok(js)
    }

    /// The service's metrics and readiness (of `parts` hops), served on
    /// `http_addr` when it is set, until `shutdown`.
    pub fn start_endpoints(
        &self,
        parts: usize,
        shutdown: &CancellationToken,
    ) -> (Metrics, Readiness) {
        let (metrics, ready) = (Metrics::new(), Readiness::new(parts));
        if let Some(addr) = self.http_addr {
            let (m, r, s) = (metrics.clone(), ready.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(e) = trailhound_telemetry::serve(addr, m, r, s).await {
                    tracing::error!(%addr, "health and metrics endpoints: {e}");
                }
            });
        }
        (metrics, ready)
    }

    /// Run one hop with this configuration's hop settings until `shutdown`,
    /// as a task of its own: the hops of one service (the baseline's three)
    /// then use the runtime's threads in parallel instead of sharing the
    /// one that polls them.
    pub async fn run_hop<S>(
        &self,
        js: &jetstream::Context,
        hop: Hop<S>,
        metrics: &Metrics,
        ready: &Readiness,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<HopStats>
    where
        S: Stage + Send + Sync + 'static,
        S::In: prost::Message + Default,
        S::Out: prost::Message,
    {
        let (settings, js, metrics, ready) =
            (self.hop.clone(), js.clone(), metrics.clone(), ready.clone());
        let shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            run_hop(&js, hop, &settings, &metrics, &ready, shutdown.cancelled()).await
        });
        Ok(task.await??)
    }

    /// Open (or create) the service's store with the tables it keeps. A
    /// store written in another layout of them (by another version) is
    /// deleted: the hops rebuild their partitions' state by replaying the
    /// streams, as after a rescale.
    pub fn open_store(&self, tables: &[&str], layouts: &[Layout]) -> anyhow::Result<Arc<Store>> {
        let dir = &self.state_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let store = Store::open_with_cache(dir, tables, self.state_cache_entries)
            .with_context(|| format!("opening state {}", dir.display()))?;
        match store.check_layouts(layouts) {
            Ok(()) => Ok(store),
            Err(e @ StateError::Layout { .. }) => {
                tracing::warn!("{e}: deleting the state, to rebuild it by replay");
                drop(store);
                Store::destroy(dir)?;
                std::fs::create_dir_all(dir)?;
                self.open_store(tables, layouts)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The StatefulSet ordinal ending a pod's host name: `detect-2` → 2.
fn ordinal(hostname: &str) -> Option<u32> {
    hostname.rsplit_once('-')?.1.parse().ok()
}

/// Cancelled on SIGTERM or Ctrl-C: services finish the batch in hand,
/// commit, ack and return.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// A service's `main`: a runtime, logs and traces, configuration, `run`
/// until it returns or a signal asks it to stop; an error is logged and
/// exits 1.
pub fn main<F, Fut>(name: &'static str, args: &ServiceArgs, run: F) -> ExitCode
where
    F: FnOnce(ServiceConfig, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let _telemetry = trailhound_telemetry::init(name);
        let outcome = match ServiceConfig::load(args) {
            Ok(config) => run(config, shutdown_on_signal()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            tracing::error!("{e:#}");
        }
        outcome
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_an_earlier_layout_is_deleted_to_be_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServiceConfig {
            state_dir: dir.path().join("state"),
            ..ServiceConfig::default()
        };
        let tables = trailhound_detect::baseline::tables();
        let layouts = trailhound_detect::baseline::LAYOUTS;
        // Written by a version before layouts were recorded.
        let store = config.open_store(&tables, &[]).unwrap();
        let mut batch = trailhound_state::Batch::default();
        batch.put("profiles", b"111111111111".to_vec(), vec![0; 8]);
        batch.set_meta("checkpoint:profile.0", 7u64.to_le_bytes());
        store.commit(batch).unwrap();
        drop(store);
        let store = config.open_store(&tables, layouts).unwrap();
        assert_eq!(store.get("profiles", b"111111111111").unwrap(), None);
        assert_eq!(store.meta("checkpoint:profile.0").unwrap(), None);
        store.check_layout(&layouts[0]).unwrap();
    }

    #[test]
    fn statefulset_ordinals() {
        assert_eq!(ordinal("trailhound-detect-2"), Some(2));
        assert_eq!(ordinal("laptop"), None);
        assert_eq!(ordinal("detect-x"), None);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services.toml");
        std::fs::write(
            &path,
            "partitions = 8\nreplicas = 2\nnats_url = \"nats://a:1\"\n",
        )
        .unwrap();
        let args = ServiceArgs {
            config: Some(path),
            replicas: Some(3),
            replica: Some(2),
            ..Default::default()
        };
        let config = ServiceConfig::load(&args).unwrap();
        assert_eq!((config.partitions, config.replicas), (8, 3));
        assert_eq!(config.nats_url, "nats://a:1");
        assert_eq!(
            config.ownership(),
            Ownership {
                replica: 2,
                replicas: 3
            }
        );
    }

    #[test]
    fn a_replica_outside_the_replicas_is_refused() {
        let args = ServiceArgs {
            replicas: Some(2),
            replica: Some(2),
            ..Default::default()
        };
        let e = ServiceConfig::load(&args).unwrap_err().to_string();
        assert!(e.contains("replica 2 is not below replicas 2"), "{e}");
    }

    #[test]
    fn the_example_config_is_accepted() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/services.example.toml"
        );
        let args = ServiceArgs {
            config: Some(PathBuf::from(example)),
            ..Default::default()
        };
        let config = ServiceConfig::load(&args).unwrap();
        assert_eq!(config.query.grpc_addr.port(), 50051);
    }

    #[test]
    fn unknown_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services.toml");
        std::fs::write(&path, "partitionz = 8\n").unwrap();
        let args = ServiceArgs {
            config: Some(path),
            ..Default::default()
        };
        let e = format!("{:#}", ServiceConfig::load(&args).unwrap_err());
        assert!(e.contains("partitionz"), "{e}");
    }
}
