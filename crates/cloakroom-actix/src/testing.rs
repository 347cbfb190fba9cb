//! Testing actix-web handlers that use sessions (feature `testing`).
//!
//! [`ActixApp`] runs an actix-web `App` on its own thread, in process, and answers the
//! requests of cloakroom's [`TestClient`](cloakroom::testing::TestClient) (or any
//! [`AppUnderTest`] user), so one test reads the same on axum and on actix-web.
//! [`Actix`] is the actix-web [`Framework`] of the conformance suite, and [`frameworks`]
//! lists both integrations, so a store proves itself through each:
//!
//! ```no_run
//! # async fn demo() {
//! use cloakroom::MemoryStore;
//! cloakroom::conformance::run_on(&cloakroom_actix::testing::frameworks(), || async {
//!     MemoryStore::new()
//! })
//! .await;
//! # }
//! ```

use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse};
use cloakroom::conformance::{respond, Axum, Framework};
use cloakroom::testing::{AppUnderTest, BoxFuture};
use cloakroom::SessionManager;
use http::{Request, Response};
use tokio::sync::{mpsc, oneshot};

use crate::{Session, SessionError, SessionMiddleware};

/// One request for the app's thread, and where its response goes.
type Job = (Request<Vec<u8>>, oneshot::Sender<Response<Vec<u8>>>);

/// An actix-web `App` as an [`AppUnderTest`]: built by `factory` on a thread of its own,
/// which runs an actix system (actix-web apps are not `Send`), and answering requests
/// from any runtime, concurrently.
///
/// The thread ends when the last clone is dropped.
///
/// ```
/// use actix_web::{web, App};
/// use cloakroom::testing::TestClient;
/// use cloakroom::MemoryStore;
/// use cloakroom_actix::testing::ActixApp;
/// use cloakroom_actix::{Session, SessionError, SessionMiddleware};
///
/// async fn visit(session: Session) -> Result<String, SessionError> {
///     let visits = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
///     Ok(visits.to_string())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sessions = SessionMiddleware::new(MemoryStore::new());
/// let mut browser = TestClient::new(ActixApp::new(move || {
///     App::new().wrap(sessions).route("/visit", web::post().to(visit))
/// }));
/// assert_eq!(browser.post("/visit").await.text(), "1");
/// assert_eq!(browser.post("/visit").await.text(), "2", "the cookie came back");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ActixApp {
    jobs: mpsc::UnboundedSender<Job>,
}

impl ActixApp {
    /// Builds the app with `factory` on a new thread and serves it there.
    ///
    /// # Panics
    /// If the thread cannot be started. A panic while building the app, or in a handler,
    /// shows on that thread and fails the requests it leaves unanswered.
    pub fn new<F, T, B>(factory: F) -> Self
    where
        F: FnOnce() -> App<T> + Send + 'static,
        T: ServiceFactory<
                ServiceRequest,
                Config = (),
                Response = ServiceResponse<B>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
        B: MessageBody + 'static,
    {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("cloakroom-actix-test".to_owned())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let app = Rc::new(actix_web::test::init_service(factory()).await);
                    while let Some((request, reply)) = queue.recv().await {
                        let app = Rc::clone(&app);
                        // Each request on its own task: concurrent requests interleave as
                        // they do on a server's worker.
                        actix_web::rt::spawn(async move {
                            let response = match app.call(to_actix(request).to_request()).await {
                                Ok(response) => from_actix(response.into_parts().1).await,
                                Err(error) => from_actix(error.error_response()).await,
                            };
                            // The caller may have stopped waiting (a timeout); nothing to do.
                            let _ = reply.send(response);
                        });
                    }
                });
            })
            .expect("a thread for the actix-web app under test");
        Self { jobs }
    }
}

impl AppUnderTest for ActixApp {
    fn call(&self, request: Request<Vec<u8>>) -> BoxFuture<Response<Vec<u8>>> {
        let (reply, response) = oneshot::channel();
        let sent = self.jobs.send((request, reply));
        Box::pin(async move {
            assert!(sent.is_ok(), "the actix-web app under test has stopped");
            response
                .await
                .expect("the actix-web app under test answered (see its panic above if not)")
        })
    }
}

/// actix-web speaks `http` 0.2 types; cloakroom and the tests `http` 1: convert through
/// the wire forms, which both accept.
fn to_actix(request: Request<Vec<u8>>) -> actix_web::test::TestRequest {
    let (parts, body) = request.into_parts();
    let method = actix_web::http::Method::from_bytes(parts.method.as_str().as_bytes())
        .expect("an HTTP method is valid in both versions");
    let mut test = actix_web::test::TestRequest::default()
        .method(method)
        .uri(&parts.uri.to_string());
    for (name, value) in &parts.headers {
        let value = actix_web::http::header::HeaderValue::from_bytes(value.as_bytes())
            .expect("a header value is valid in both versions");
        test = test.append_header((name.as_str(), value));
    }
    test.set_payload(body)
}

async fn from_actix<B: MessageBody>(response: HttpResponse<B>) -> Response<Vec<u8>> {
    let mut converted = Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        converted = converted.header(name.as_str(), value.as_bytes());
    }
    let body = match actix_web::body::to_bytes(response.into_body()).await {
        Ok(body) => body.to_vec(),
        Err(_) => panic!("the actix-web response body could not be read"),
    };
    converted
        .body(body)
        .expect("a response valid in actix-web is valid in http 1")
}

/// actix-web, through [`SessionMiddleware`], the [`Session`] extractor and
/// [`SessionError`], for the conformance suite.
#[derive(Clone, Copy, Debug, Default)]
pub struct Actix;

impl Framework for Actix {
    fn name(&self) -> &'static str {
        "actix-web"
    }

    fn serve(&self, manager: Arc<SessionManager>) -> Arc<dyn AppUnderTest> {
        Arc::new(ActixApp::new(move || {
            App::new()
                .wrap(SessionMiddleware::from_manager(manager))
                .default_service(web::to(conformance_routes))
        }))
    }
}

/// Every request of the conformance app, answered by the core's routes the way an
/// actix-web handler answers: session errors through [`SessionError`].
async fn conformance_routes(
    session: Session,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, SessionError> {
    let method = http::Method::from_bytes(request.method().as_str().as_bytes())
        .expect("an HTTP method is valid in both versions");
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let reply = respond(&session, &method, path, &body).await?;
    let status =
        StatusCode::from_u16(reply.status.as_u16()).expect("a status is valid in both versions");
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(reply.body.to_string()))
}

/// The frameworks cloakroom integrates with, axum and actix-web, for
/// [`cloakroom::conformance::run_on`] and friends.
pub fn frameworks() -> Vec<Arc<dyn Framework>> {
    vec![Arc::new(Axum), Arc::new(Actix)]
}
