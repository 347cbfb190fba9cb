//! Handlers that many tests need, so each test app does not write them again.

use crate::{Session, SessionError};

/// Adds one to the session's counter `n` (a new session starts at 0) and answers the new
/// value as text: the smallest handler that writes, for tests of lost updates, caching and
/// concurrency.
///
/// ```
/// use axum::{routing::post, Router};
/// use cloakroom::testing::{increment, TestClient};
/// use cloakroom::{MemoryStore, SessionLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = Router::new()
///     .route("/incr", post(increment))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// let mut browser = TestClient::new(app);
/// assert_eq!(browser.post("/incr").await.text(), "1");
/// assert_eq!(browser.post("/incr").await.text(), "2");
/// # }
/// ```
pub async fn increment(session: Session) -> Result<String, SessionError> {
    let n = session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}
