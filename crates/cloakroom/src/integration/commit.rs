//! [`CommitFuture`]: the response future of every integration, written once. A framework
//! only says how its responses meet the commit ([`Integration`]); the order of the steps,
//! and the fast paths that skip them, are the same for all.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::StatusCode;

use crate::session::{Finish, Session};

/// A framework's side of the commit step, for [`CommitFuture`]: how to read its
/// responses' status and how to change a response once its session is committed.
/// Implemented by a marker type per framework (the tower layer's
/// [`Tower`](crate::layer::Tower), actix-web's `cloakroom_actix::ActixWeb`).
pub trait Integration {
    /// What the wrapped service answers with.
    type Response;
    /// What the integration answers with.
    type Output;
    /// A commit that waits (on the store, or on a task the handler spawned that holds the
    /// session), followed by [`committed`](Self::committed). The integration boxes it,
    /// because only it knows whether its futures must be `Send`.
    type Deferred: Future<Output = Self::Output>;

    /// The response's status: an error status commits no writes (see
    /// [`Session::finish`]).
    fn status(response: &Self::Response) -> StatusCode;

    /// Whether the handler answered a store failure: a `503` it built from a
    /// [`SessionError`](crate::SessionError), which the failure policy gives the
    /// configured `Retry-After` whether or not the session was touched.
    fn store_unavailable(response: &Self::Response) -> bool;

    /// The response of a request that never touched its session and did not answer a
    /// store failure: nothing was committed, nothing changes.
    fn untouched(response: Self::Response) -> Self::Output;

    /// The response once `finish` is known: the failure policy applied and the session's
    /// headers added ([`Finish::response_changes`]).
    fn committed(response: Self::Response, finish: Finish, session: &Session) -> Self::Output;

    /// `session.finish(status)`, then [`committed`](Self::committed), boxed.
    fn defer(response: Self::Response, session: Session, status: StatusCode) -> Self::Deferred;
}

pin_project_lite::pin_project! {
    /// The future an integration's service returns: the wrapped service's response, then
    /// the session's commit.
    ///
    /// A request whose handler never touched its session costs no commit step at all (no
    /// lock, no allocation). A client-side session commits in place, and so does a
    /// server-side one whose commit calls no store (a read with no idle refresh due, a
    /// logout, an error response that saves nothing), unless its lock is held elsewhere (a
    /// task the handler spawned). Any other commit waits, boxed ([`Integration::defer`]).
    pub struct CommitFuture<F, I: Integration> {
        // `None` for an answer given without the app (the device-binding endpoints).
        #[pin]
        inner: Option<F>,
        session: Option<Session>,
        #[pin]
        committing: Option<I::Deferred>,
    }
}

impl<F, I: Integration> CommitFuture<F, I> {
    /// `inner`, the wrapped service's response future, then the commit of `session`.
    pub fn new(inner: F, session: Session) -> Self {
        Self {
            inner: Some(inner),
            session: Some(session),
            committing: None,
        }
    }

    /// An answer the integration gives itself, without the wrapped service or a session
    /// (the device-binding endpoints).
    pub fn answered(answer: I::Deferred) -> Self {
        Self {
            inner: None,
            session: None,
            committing: Some(answer),
        }
    }
}

impl<F, I: Integration> std::fmt::Debug for CommitFuture<F, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitFuture")
            .field("session", &self.session)
            .field("committing", &self.committing.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, I, E> Future for CommitFuture<F, I>
where
    F: Future<Output = Result<I::Response, E>>,
    I: Integration,
{
    type Output = Result<I::Output, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.committing.is_none() {
            let inner = this
                .inner
                .as_pin_mut()
                .expect("a CommitFuture has its inner future until it commits");
            let response = ready!(inner.poll(cx))?;
            let session = this
                .session
                .take()
                .expect("a CommitFuture is not polled after completion");
            if session.finish_untouched() {
                if I::store_unavailable(&response) {
                    let finish = Finish::default();
                    return Poll::Ready(Ok(I::committed(response, finish, &session)));
                }
                return Poll::Ready(Ok(I::untouched(response)));
            }
            let status = I::status(&response);
            // A cookie session, or a read, commits without waiting: no future to box.
            if let Some(finish) = session.finish_now(status) {
                return Poll::Ready(Ok(I::committed(response, finish, &session)));
            }
            this.committing
                .set(Some(I::defer(response, session, status)));
        }
        let committing = this.committing.as_pin_mut().expect("set above");
        committing.poll(cx).map(Ok)
    }
}
