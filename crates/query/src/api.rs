//! The gRPC services of the query side: `trailhound.v1.QueryService` over
//! a [`FindingsView`], `trailhound.v1.InvestigationService` over
//! [`Investigations`] and `trailhound.v1.ProfileService` over
//! [`PrincipalEvents`], with server reflection so that `grpcurl` and other
//! generic clients can call them without the `.proto` files.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};
use trailhound_proto::investigation_service_server::{
    InvestigationService, InvestigationServiceServer,
};
use trailhound_proto::profile_service_server::{ProfileService, ProfileServiceServer};
use trailhound_proto::query_service_server::{QueryService, QueryServiceServer};
use trailhound_proto::{
    Finding, GetFindingRequest, GetInvestigationRequest, GetProfileRequest, IndicatorType,
    Investigation, ListFindingsRequest, ListFindingsResponse, ListIndicatorsRequest,
    ListIndicatorsResponse, ListInvestigationEventsRequest, ListInvestigationEventsResponse,
    ListInvestigationSessionsRequest, ListInvestigationSessionsResponse, Profile,
    StartInvestigationRequest,
};

use crate::events::{EventsError, PrincipalEvents};
use crate::filter::FindingFilter;
use crate::investigations::{InvestigationError, Investigations};
use crate::profile::{Profiler, requested_values, requested_window};
use crate::view::{FindingsView, ViewError};

/// Findings changed while a slow watcher had not taken them yet, beyond
/// which it is told it fell behind.
pub const WATCH_BUFFER: usize = 4_096;

/// Serves a view; `updates` carries every finding the view changes.
#[derive(Debug, Clone)]
pub struct QueryApi {
    view: FindingsView,
    updates: broadcast::Sender<Arc<Finding>>,
    investigations: Investigations,
    events: PrincipalEvents,
}

impl QueryApi {
    pub fn new(
        view: FindingsView,
        updates: broadcast::Sender<Arc<Finding>>,
        investigations: Investigations,
        events: PrincipalEvents,
    ) -> Self {
        Self {
            view,
            updates,
            investigations,
            events,
        }
    }

    /// The query, investigation, profile and reflection services, ready to
    /// serve.
    pub fn into_router(self) -> tonic::transport::server::Router {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(trailhound_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the generated descriptor set is valid");
        tonic::transport::Server::builder()
            .add_service(InvestigationServiceServer::new(self.clone()))
            .add_service(ProfileServiceServer::new(self.clone()))
            .add_service(QueryServiceServer::new(self))
            .add_service(reflection)
    }

    /// Run `work` on the investigations on a blocking thread.
    async fn investigate<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Investigations) -> Result<T, InvestigationError> + Send + 'static,
    ) -> Result<T, Status> {
        let investigations = self.investigations.clone();
        blocking(move || work(&investigations)).await
    }

    /// Read the view on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&FindingsView) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, Status> {
        let view = self.view.clone();
        blocking(move || read(&view)).await
    }
}

/// Run `work` on a blocking thread (RocksDB reads and writes block), its
/// error as a status.
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: Into<Status> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("query worker: {e}")))?
        .map_err(Into::into)
}

impl From<ViewError> for Status {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::BadToken(_) => Status::invalid_argument(e.to_string()),
            e => Status::internal(e.to_string()),
        }
    }
}

impl From<EventsError> for Status {
    fn from(e: EventsError) -> Self {
        Status::internal(e.to_string())
    }
}

impl From<InvestigationError> for Status {
    fn from(e: InvestigationError) -> Self {
        match e {
            InvestigationError::BadRequest(_) => Status::invalid_argument(e.to_string()),
            e => Status::internal(e.to_string()),
        }
    }
}

type FindingStream = Pin<Box<dyn Stream<Item = Result<Finding, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn list_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<ListFindingsResponse>, Status> {
        let request = request.into_inner();
        let filter = FindingFilter::from_request(&request)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let page = self
            .read(move |view| view.list(&filter, request.page_size as usize, &request.page_token))
            .await?;
        Ok(Response::new(ListFindingsResponse {
            findings: page.findings,
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_finding(
        &self,
        request: Request<GetFindingRequest>,
    ) -> Result<Response<Finding>, Status> {
        let id = request.into_inner().id;
        let found = self.read({
            let id = id.clone();
            move |view| view.get(&id)
        });
        let finding = found.await?.ok_or_else(|| not_found("finding", &id))?;
        Ok(Response::new(finding))
    }

    type WatchFindingsStream = FindingStream;

    /// Every finding created or updated from now on that the filter
    /// matches (paging fields are ignored); a watcher that falls more than
    /// [`WATCH_BUFFER`] findings behind gets an error and should list again.
    async fn watch_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<FindingStream>, Status> {
        let filter = FindingFilter::from_request(request.get_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let updates = self.updates.subscribe();
        let stream = futures_util::stream::unfold(Some((updates, filter)), |state| async move {
            let (mut updates, filter) = state?;
            loop {
                match updates.recv().await {
                    Ok(finding) if filter.matches(&finding) => {
                        return Some((Ok(Finding::clone(&finding)), Some((updates, filter))));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let status = Status::resource_exhausted(format!(
                            "the watch fell {missed} findings behind; list again and watch"
                        ));
                        return Some((Err(status), None));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl InvestigationService for QueryApi {
    async fn start_investigation(
        &self,
        request: Request<StartInvestigationRequest>,
    ) -> Result<Response<Investigation>, Status> {
        let request = request.into_inner();
        let now_ms = now_ms();
        let report = self.investigate(move |i| i.start(&request, now_ms)).await?;
        Ok(Response::new(report))
    }

    async fn get_investigation(
        &self,
        request: Request<GetInvestigationRequest>,
    ) -> Result<Response<Investigation>, Status> {
        let id = request.into_inner().id;
        let found = self.investigate({
            let id = id.clone();
            move |i| i.get(&id)
        });
        let report = found
            .await?
            .ok_or_else(|| not_found("investigation", &id))?;
        Ok(Response::new(report))
    }

    async fn list_indicators(
        &self,
        request: Request<ListIndicatorsRequest>,
    ) -> Result<Response<ListIndicatorsResponse>, Status> {
        let request = request.into_inner();
        let kind = IndicatorType::try_from(request.r#type).map_err(|_| {
            Status::invalid_argument(format!("unknown indicator type {}", request.r#type))
        })?;
        let id = request.investigation_id.clone();
        let page = self
            .investigate(move |i| {
                i.indicators(
                    &request.investigation_id,
                    kind,
                    request.page_size as usize,
                    &request.page_token,
                )
            })
            .await?;
        let (indicators, next_page_token) = page.ok_or_else(|| not_found("investigation", &id))?;
        Ok(Response::new(ListIndicatorsResponse {
            indicators,
            next_page_token,
        }))
    }

    async fn list_investigation_events(
        &self,
        request: Request<ListInvestigationEventsRequest>,
    ) -> Result<Response<ListInvestigationEventsResponse>, Status> {
        let request = request.into_inner();
        let id = request.investigation_id.clone();
        let page = self
            .investigate(move |i| {
                i.events(
                    &request.investigation_id,
                    request.page_size as usize,
                    &request.page_token,
                )
            })
            .await?;
        let (events, next_page_token) = page.ok_or_else(|| not_found("investigation", &id))?;
        Ok(Response::new(ListInvestigationEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn list_investigation_sessions(
        &self,
        request: Request<ListInvestigationSessionsRequest>,
    ) -> Result<Response<ListInvestigationSessionsResponse>, Status> {
        let request = request.into_inner();
        let id = request.investigation_id.clone();
        let page = self
            .investigate(move |i| {
                i.sessions(
                    &request.investigation_id,
                    request.page_size as usize,
                    &request.page_token,
                )
            })
            .await?;
        let (sessions, next_page_token) = page.ok_or_else(|| not_found("investigation", &id))?;
        Ok(Response::new(ListInvestigationSessionsResponse {
            sessions,
            next_page_token,
        }))
    }
}

#[tonic::async_trait]
impl ProfileService for QueryApi {
    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        let request = request.into_inner();
        let window = requested_window(&request, now_ms()).map_err(Status::invalid_argument)?;
        let events = self.events.clone();
        let profile = blocking(move || {
            let mut profiler = Profiler::new(window.clone());
            let (account, principal) = (&window.account_id, &window.principal);
            events.visit_between(
                account,
                principal,
                window.start_ms,
                window.end_ms,
                |event| {
                    profiler.add_event(&event);
                },
            )?;
            Ok::<_, EventsError>(profiler.profile(requested_values(&request)))
        });
        Ok(Response::new(profile.await?))
    }
}

/// NOT_FOUND for a `what` (finding, investigation) with `id`.
fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!("no {what} {id}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;
    use trailhound_proto::Severity;
    use trailhound_proto::query_service_client::QueryServiceClient;
    use trailhound_state::Store;

    use super::*;
    use trailhound_proto::investigation_service_client::InvestigationServiceClient;
    use trailhound_proto::profile_service_client::ProfileServiceClient;
    use trailhound_proto::{CloudTrailEvent, EnrichedEvent, Geo, Network, Principal};

    use crate::events::PrincipalEvents;
    use crate::investigation::{TravelLimits, indicator_type};

    const DAY_MS: i64 = 86_400_000;

    fn finding(id: &str, detector: &str, last_event_ms: i64) -> Finding {
        let mut f = Finding {
            id: id.into(),
            detector: detector.into(),
            principal: "arn:aws:iam::111122223333:user/alice".into(),
            first_event_ms: 1_000,
            last_event_ms,
            ..Default::default()
        };
        f.set_severity(Severity::Medium);
        f
    }

    /// The query side over `store` on a loopback port: its endpoint and
    /// the sender of findings to watch.
    async fn start(store: Arc<Store>) -> (String, broadcast::Sender<Arc<Finding>>) {
        let view = FindingsView::new(store.clone());
        let events = PrincipalEvents::new(store.clone(), 46 * DAY_MS);
        let travel = TravelLimits {
            kmh: 900.0,
            min_km: 500.0,
        };
        let investigations = Investigations::new(
            store,
            events.clone(),
            view.clone(),
            travel,
            90 * DAY_MS,
            1_000_000,
        );
        let (updates, _) = broadcast::channel(WATCH_BUFFER);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let router = QueryApi::new(view, updates.clone(), investigations, events).into_router();
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        (endpoint, updates)
    }

    async fn serve(
        store: Arc<Store>,
    ) -> (
        QueryServiceClient<tonic::transport::Channel>,
        broadcast::Sender<Arc<Finding>>,
    ) {
        let (endpoint, updates) = start(store).await;
        (
            QueryServiceClient::connect(endpoint).await.unwrap(),
            updates,
        )
    }

    #[tokio::test]
    async fn findings_are_listed_got_and_watched_over_grpc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::tables()).unwrap();
        let view = FindingsView::new(store.clone());
        view.apply(
            vec![
                (1, finding("a", "TH-002", 5_000)),
                (2, finding("b", "TH-016", 6_000)),
                (3, finding("c", "TH-002", 7_000)),
            ],
            3,
        )
        .unwrap();
        let (mut client, updates) = serve(store).await;

        let request = ListFindingsRequest {
            detector: "TH-002".into(),
            page_size: 1,
            ..Default::default()
        };
        let first = client
            .list_findings(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.findings[0].id, "c");
        let second = client
            .list_findings(ListFindingsRequest {
                page_token: first.next_page_token,
                ..request
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.findings[0].id, "a");
        assert!(second.next_page_token.is_empty());

        let got = client
            .get_finding(GetFindingRequest { id: "b".into() })
            .await
            .unwrap();
        assert_eq!(got.into_inner().detector, "TH-016");
        let missing = client
            .get_finding(GetFindingRequest { id: "zz".into() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let bad = client
            .list_findings(ListFindingsRequest {
                since_ms: 9,
                until_ms: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);

        let watch = ListFindingsRequest {
            detector: "TH-016".into(),
            ..Default::default()
        };
        let mut watched = client.watch_findings(watch).await.unwrap().into_inner();
        updates
            .send(Arc::new(finding("d", "TH-002", 8_000)))
            .unwrap();
        updates
            .send(Arc::new(finding("e", "TH-016", 9_000)))
            .unwrap();
        let next = watched.next().await.unwrap().unwrap();
        assert_eq!(next.id, "e", "only what the filter matches");
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::tables()).unwrap();
        let (mut client, updates) = serve(store).await;
        let mut watched = client
            .watch_findings(ListFindingsRequest::default())
            .await
            .unwrap()
            .into_inner();
        // Wait until the call is subscribed, then overflow its buffer.
        while updates.receiver_count() == 0 {
            tokio::task::yield_now().await;
        }
        for i in 0..WATCH_BUFFER + 10 {
            updates
                .send(Arc::new(finding(&format!("f{i}"), "TH-002", 1_000)))
                .unwrap();
        }
        let mut outcome = Ok(());
        while let Some(item) = watched.next().await {
            if let Err(status) = item {
                outcome = Err(status);
                break;
            }
        }
        let status = outcome.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    }

    fn call(t: i64, country: &str, asn: u32) -> EnrichedEvent {
        EnrichedEvent {
            event: Some(Box::new(CloudTrailEvent {
                event_id: format!("e{t}"),
                event_time_ms: t,
                event_name: "ListUsers".into(),
                ..Default::default()
            })),
            principal: Some(Principal {
                account_id: "111122223333".into(),
                arn: "arn:aws:iam::111122223333:user/alice".into(),
                ..Default::default()
            }),
            geo: Some(Geo {
                country: country.into(),
                ..Default::default()
            }),
            network: Some(Network {
                asn,
                ..Default::default()
            }),
            service: "iam".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn investigations_are_started_got_and_their_indicators_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::tables()).unwrap();
        let start_ms = 100 * DAY_MS;
        let mut events: Vec<EnrichedEvent> = (60..100)
            .map(|day| call(day * DAY_MS, "DE", 3320))
            .collect();
        events.push(call(start_ms + 1_000, "RU", 198610));
        events.push(call(start_ms + 2 * DAY_MS, "BR", 28573)); // after the scope
        PrincipalEvents::new(store.clone(), 46 * DAY_MS)
            .apply(&events, 42)
            .unwrap();
        let mut related = finding("f1", "TH-015", start_ms + 1_000);
        related.first_event_ms = start_ms + 1_000;
        related.account_id = "111122223333".into();
        FindingsView::new(store.clone())
            .apply(vec![(1, related)], 1)
            .unwrap();
        let (endpoint, _) = start(store).await;
        let mut client = InvestigationServiceClient::connect(endpoint).await.unwrap();

        let report = client
            .start_investigation(StartInvestigationRequest {
                account_id: "111122223333".into(),
                principal: "arn:aws:iam::111122223333:user/alice".into(),
                scope_start_ms: start_ms,
                scope_end_ms: start_ms + DAY_MS,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((report.events_in_scope, report.baseline_events), (1, 40));
        assert!(!report.id.is_empty());
        let got = client
            .get_investigation(GetInvestigationRequest {
                id: report.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, report);

        let list =
            |kind: IndicatorType, page_size: u32, page_token: String| ListIndicatorsRequest {
                investigation_id: report.id.clone(),
                r#type: kind as i32,
                page_size,
                page_token,
            };
        let new_geo = client
            .list_indicators(list(IndicatorType::NewGeolocation, 0, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(new_geo.indicators.len(), 1, "RU, not BR after the scope");
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_indicators(list(IndicatorType::Unspecified, 1, token))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.indicators);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(all, report.indicators, "paged one at a time");
        assert!(
            all.iter()
                .any(|i| indicator_type(i) == IndicatorType::RelatedFinding)
        );
        let sessions = client
            .list_investigation_sessions(ListInvestigationSessionsRequest {
                investigation_id: report.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sessions.sessions, report.sessions);
        assert_eq!(
            (report.session_count, sessions.next_page_token),
            (1, "".into())
        );

        let missing = client
            .get_investigation(GetInvestigationRequest { id: "nope".into() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let missing = client
            .list_investigation_sessions(ListInvestigationSessionsRequest {
                investigation_id: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let backwards = client
            .start_investigation(StartInvestigationRequest {
                principal: "arn:aws:iam::111122223333:user/alice".into(),
                scope_start_ms: start_ms,
                scope_end_ms: start_ms - 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(backwards.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_profile_is_served_from_the_stored_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::tables()).unwrap();
        let end_ms = 100 * DAY_MS;
        let events: Vec<EnrichedEvent> = (50..100)
            .map(|day| {
                let mut e = call(day * DAY_MS, if day < 85 { "DE" } else { "FR" }, 3320);
                e.network.as_mut().unwrap().is_network_location = true;
                e
            })
            .collect();
        PrincipalEvents::new(store.clone(), 46 * DAY_MS)
            .apply(&events, 50)
            .unwrap();
        let (endpoint, _) = start(store).await;
        let mut client = ProfileServiceClient::connect(endpoint).await.unwrap();
        let request = GetProfileRequest {
            account_id: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:user/alice".into(),
            until_ms: end_ms,
            days: 20,
            max_values: 1,
        };
        let served = client
            .get_profile(request.clone())
            .await
            .unwrap()
            .into_inner();

        let mut profiler = Profiler::new(requested_window(&request, 0).unwrap());
        for event in &events {
            profiler.add_event(event);
        }
        assert_eq!(served, profiler.profile(1), "the same as from the events");
        assert_eq!(served.events, 20, "the 20 days before until_ms");
        let countries = served
            .dimensions
            .iter()
            .find(|d| d.name == "country")
            .unwrap();
        assert_eq!(
            (countries.distinct, countries.values[0].value.as_str()),
            (2, "FR")
        );

        let missing = client
            .get_profile(GetProfileRequest::default())
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::InvalidArgument);
    }
}
