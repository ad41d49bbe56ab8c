//! The gRPC query service (`trailhound.v1.QueryService`) over a
//! [`FindingsView`], with server reflection so that `grpcurl` and other
//! generic clients can call it without the `.proto` files.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};
use trailhound_proto::query_service_server::{QueryService, QueryServiceServer};
use trailhound_proto::{Finding, GetFindingRequest, ListFindingsRequest, ListFindingsResponse};

use crate::filter::FindingFilter;
use crate::view::{FindingsView, ViewError};

/// Findings changed while a slow watcher had not taken them yet, beyond
/// which it is told it fell behind.
pub const WATCH_BUFFER: usize = 4_096;

/// Serves a view; `updates` carries every finding the view changes.
#[derive(Debug, Clone)]
pub struct QueryApi {
    view: FindingsView,
    updates: broadcast::Sender<Arc<Finding>>,
}

impl QueryApi {
    pub fn new(view: FindingsView, updates: broadcast::Sender<Arc<Finding>>) -> Self {
        Self { view, updates }
    }

    /// The query service and the reflection service, ready to serve.
    pub fn into_router(self) -> tonic::transport::server::Router {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(trailhound_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the generated descriptor set is valid");
        tonic::transport::Server::builder()
            .add_service(QueryServiceServer::new(self))
            .add_service(reflection)
    }

    /// Read the view on a blocking thread: RocksDB reads block.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&FindingsView) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, Status> {
        let view = self.view.clone();
        tokio::task::spawn_blocking(move || read(&view))
            .await
            .map_err(|e| Status::internal(format!("reading findings: {e}")))?
            .map_err(|e| match e {
                ViewError::BadToken(_) => Status::invalid_argument(e.to_string()),
                e => Status::internal(e.to_string()),
            })
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
        match found.await? {
            Some(finding) => Ok(Response::new(finding)),
            None => Err(Status::not_found(format!("no finding {id}"))),
        }
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

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;
    use trailhound_proto::Severity;
    use trailhound_proto::query_service_client::QueryServiceClient;
    use trailhound_state::Store;

    use super::*;
    use crate::view::TABLES;

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

    /// A served view on a loopback port and a client of it.
    async fn serve(
        view: FindingsView,
    ) -> (
        QueryServiceClient<tonic::transport::Channel>,
        broadcast::Sender<Arc<Finding>>,
    ) {
        let (updates, _) = broadcast::channel(WATCH_BUFFER);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = QueryApi::new(view, updates.clone()).into_router();
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        let client = QueryServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        (client, updates)
    }

    #[tokio::test]
    async fn findings_are_listed_got_and_watched_over_grpc() {
        let dir = tempfile::tempdir().unwrap();
        let view = FindingsView::new(Store::open(dir.path(), TABLES).unwrap());
        view.apply(
            vec![
                (1, finding("a", "TH-002", 5_000)),
                (2, finding("b", "TH-016", 6_000)),
                (3, finding("c", "TH-002", 7_000)),
            ],
            3,
        )
        .unwrap();
        let (mut client, updates) = serve(view).await;

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
        let view = FindingsView::new(Store::open(dir.path(), TABLES).unwrap());
        let (mut client, updates) = serve(view).await;
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
}
