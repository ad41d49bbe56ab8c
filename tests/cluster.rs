//! Real processes for the distributed tests: a `nats-server -js` on a free
//! loopback port with a temporary store, and the service binaries.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use trailhound_pipeline::nats::{SHUTDOWN_GRACE, Topic, inspect};
use trailhound_proto::Finding;

/// How long a service may take to exit after SIGTERM: its shutdown grace for
/// the batch in hand and some more.
pub const STOP_WITHIN: Duration = Duration::from_secs(3 * SHUTDOWN_GRACE.as_secs());

/// A JetStream server of this test's own; killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            store: tempfile::tempdir().unwrap(),
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start the server process on this server's port and store: at start,
    /// and again after [`NatsServer::stop`].
    pub fn resume(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (scripts/setup installs it)");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Stop the server abruptly and start it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Stop the server abruptly; [`NatsServer::resume`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// moto's server: S3 and SQS on a free loopback port, in memory; killed
/// when dropped.
pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server on PATH (scripts/setup installs it)");
        wait_for_port(port);
        Self { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points the AWS SDK (ours and the services')
    /// at this server.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url().as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service binary built beside this test (`cargo build --workspace --bins`,
/// which scripts/test runs first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test does)",
        path.display()
    );
    path
}

/// One running service process; killed when dropped.
pub struct Service {
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Where its /healthz, /readyz and /metrics are served.
    pub http_port: u16,
}

impl Service {
    /// Start `trailhound-<stage>` with `args` (its state dir, replica …)
    /// and its endpoints on a free port.
    pub fn start(stage: &str, args: Vec<String>) -> Self {
        Self::start_with_env(stage, args, Vec::new())
    }

    /// The same, with extra environment variables.
    pub fn start_with_env(stage: &str, mut args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let http_port = free_port();
        args.extend(["--http-addr".to_string(), format!("127.0.0.1:{http_port}")]);
        let mut service = Self {
            name: format!("trailhound-{stage}"),
            args,
            env,
            child: None,
            http_port,
        };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let child = Command::new(binary(&self.name))
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// `kill -9`, then start again with the same arguments and state.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, and wait for the exit; panics when it takes longer than
    /// [`STOP_WITHIN`] (a service must stop even when NATS is away).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {STOP_WITHIN:?} of SIGTERM",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Does `/readyz` answer 200?
    pub fn is_ready(&self) -> bool {
        http_get(self.http_port, "/readyz").is_some_and(|(status, _)| status == 200)
    }

    /// Has it exited by itself (a crash)?
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `path` from 127.0.0.1:`port`: (status code, whole response), or
/// None while nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[], &[])
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status code, whole
/// response), or None while nothing listens.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// Run `trailhound-ingest` over `paths` to completion.
pub fn ingest(nats_url: &str, paths: &[&Path]) {
    ingest_with(nats_url, &[], paths);
}

/// Run `trailhound-ingest` with extra flags (a `--config`).
pub fn ingest_with(nats_url: &str, flags: &[String], paths: &[&Path]) {
    let status = Command::new(binary("trailhound-ingest"))
        .args(["--nats-url", nats_url])
        .args(flags)
        .args(paths)
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success(), "ingest failed: {status}");
}

pub async fn connect(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

/// Events a stream holds (the items of its messages).
pub async fn stream_events(js: &jetstream::Context, stream: &str) -> u64 {
    let topic = Topic::ALL
        .into_iter()
        .find(|t| t.stream == stream)
        .unwrap_or_else(|| panic!("no stream {stream}"));
    inspect::stream_events(js, topic).await.unwrap()
}

/// Wait until `stream` holds at least `n` events; panic after `timeout`.
pub async fn wait_for_events(js: &jetstream::Context, stream: &str, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // A service just started may not have created its streams yet.
    while js.get_stream(stream).await.is_err() {
        assert!(Instant::now() < deadline, "{stream} was never created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while stream_events(js, stream).await < n {
        assert!(Instant::now() < deadline, "{stream} never held {n} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the whole pipeline is idle and the baseline's streams hold
/// `events` events each; returns when it was first seen idle then (streams
/// are counted only when idle: reading them is not free).
pub async fn wait_until_settled(
    js: &jetstream::Context,
    events: u64,
    timeout: Duration,
) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let idle_since = inspect::wait_idle(js, Duration::from_millis(300), left)
            .await
            .unwrap();
        let mut held = Vec::new();
        for stream in ["TH_ENRICHED", "TH_PROFILED", "TH_ACCOUNTED", "TH_OBSERVED"] {
            held.push((stream, stream_events(js, stream).await));
        }
        if held.iter().all(|&(_, n)| n >= events) {
            return idle_since;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline never settled with {events} events: the streams hold {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn stored_findings(js: &jetstream::Context) -> Vec<Finding> {
    inspect::stored_findings(js).await.unwrap()
}

/// Dead letters: (subject, reason) of each.
pub async fn dead_letters(js: &jetstream::Context) -> Vec<(String, String)> {
    let dead = inspect::dead_letters(js).await.unwrap();
    dead.into_iter().map(|d| (d.subject, d.reason)).collect()
}

/// Wait until a consumer has acked some but not all of its stream: the
/// moment to crash its service. False if it finished first.
pub async fn wait_mid_way(js: &jetstream::Context, stream: &str, consumer: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let info = js
            .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(consumer, stream)
            .await
            .ok();
        if let Some(mut c) = info {
            let info = c.info().await.unwrap();
            if info.ack_floor.stream_sequence > 0 {
                return info.num_pending > 0;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Every stage as its own process: one enrich and `replicas` replicas of
/// each stateful stage, each with its own store. (Enrich replicas share one
/// consumer, so two of them reorder a multi-week backfill by whole batches,
/// beyond what the baselines are built for: tests comparing with `scan` use
/// one.)
pub struct Pipeline {
    pub services: Vec<Service>,
    state: tempfile::TempDir,
}

impl Pipeline {
    pub fn start(nats_url: &str, replicas: u32) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), nats_url, replicas, &[])
    }

    /// Start one enrich and `replicas` replicas of each stateful stage,
    /// replica i's state under `state/<stage>-<i>` (so a second pipeline
    /// can continue the first's state), and extra flags for all.
    pub fn start_in(
        state: tempfile::TempDir,
        nats_url: &str,
        replicas: u32,
        flags: &[String],
    ) -> Self {
        let mut pipeline = Self::empty(state);
        pipeline.start_stage("enrich", 0, 1, nats_url, flags);
        for stage in ["baseline", "detect", "alert"] {
            for replica in 0..replicas {
                pipeline.start_stage(stage, replica, replicas, nats_url, flags);
            }
        }
        pipeline
    }

    /// No service running yet.
    pub fn empty(state: tempfile::TempDir) -> Self {
        Self {
            services: Vec::new(),
            state,
        }
    }

    /// Start one replica of one stage.
    pub fn start_stage(
        &mut self,
        stage: &str,
        replica: u32,
        replicas: u32,
        nats_url: &str,
        flags: &[String],
    ) {
        let mut args = vec!["--nats-url".to_string(), nats_url.to_string()];
        args.extend_from_slice(flags);
        if stage == "enrich" {
            let db = |rel: &str| crate::shared(rel).display().to_string();
            args.extend([
                "--geoip-city".to_string(),
                db("geoip/dbip-city-lite-2023-04.mmdb.gz"),
                "--geoip-asn".to_string(),
                db("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz"),
                "--aws-ip-ranges".to_string(),
                "builtin".to_string(),
            ]);
        } else {
            let dir = self.state.path().join(format!("{stage}-{replica}"));
            args.extend([
                "--replica".to_string(),
                replica.to_string(),
                "--replicas".to_string(),
                replicas.to_string(),
                "--state-dir".to_string(),
                dir.display().to_string(),
            ]);
        }
        self.services.push(Service::start(stage, args));
    }

    /// The first replica of a stage.
    pub fn service(&mut self, name: &str) -> &mut Service {
        let name = format!("trailhound-{name}");
        self.services.iter_mut().find(|s| s.name == name).unwrap()
    }

    /// SIGTERM every service and hand back the state directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        for service in &mut self.services {
            let status = service.stop();
            assert!(status.success(), "{} exited with {status}", service.name);
        }
        self.state
    }

    /// Wait until every service reports ready (consuming, and done
    /// rebuilding the partitions it took over).
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for service in &self.services {
            while !service.is_ready() {
                assert!(
                    Instant::now() < deadline,
                    "{} never became ready",
                    service.name
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Panic if a service died by itself.
    pub fn assert_running(&mut self) {
        for service in &mut self.services {
            assert!(service.exited().is_none(), "{} exited", service.name);
        }
    }
}
