//! The engine's side of device binding: the offer a login makes, the bound-cookie check
//! on load, and the registration and refresh endpoints the tower layer answers.
//!
//! Every state change goes through the store's compare-and-set `update` on a freshly
//! loaded record, so a challenge is consumed once even when requests race: the loser
//! reloads, finds the challenge gone, and is refused.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::binding::{BindingStatus, DeviceBinding, DeviceBindingConfig};
use super::{headers, RETRY_CHALLENGE_LIFETIME};
use crate::change::{Change, Field};
use crate::codec::{self, IdCandidates};
use crate::config::{OnStoreError, SessionConfig};
use crate::id::{IdFormat, SessionId, StoreKey};
use crate::record::{now, Record};
use crate::session::SessionManager;
use crate::store::{SessionStore, StoreError, UpdateError};

/// How many times an endpoint reloads and retries after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 8;

/// On login: a fresh pending binding replaces any earlier one (pushed onto `changes`),
/// and the `Secure-Session-Registration` header that offers it. `None` when device
/// binding is off.
pub(crate) fn offer_on_login(
    config: &SessionConfig,
    changes: &mut Vec<Change>,
) -> Option<(HeaderName, HeaderValue)> {
    let binding_config = config.device_binding.as_ref()?;
    match DeviceBinding::offer(binding_config, now()) {
        Ok((binding, header)) => {
            let value = serde_json::to_value(&binding).ok()?;
            changes.push(Change::Set(Field::DeviceBinding(Some(Box::new(value)))));
            Some((headers::REGISTRATION, header))
        }
        // A validated configuration always makes a valid header; should it not, the
        // login goes on unbound rather than fail.
        Err(error) => {
            tracing::warn!(%error, "device binding not offered");
            changes.push(Change::Set(Field::DeviceBinding(None)));
            None
        }
    }
}

/// Whether a loaded record is bound to a device key while the request carries no valid
/// bound cookie for it: then the request must not act as that session.
pub(crate) fn lacks_bound_cookie<'a>(
    config: &SessionConfig,
    record: &Record,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
) -> bool {
    let (Some(binding_config), Some(stored)) = (&config.device_binding, &record.device_binding)
    else {
        return false;
    };
    let Some(binding) = decode(stored) else {
        // A binding this version cannot read is treated as no binding: never a lockout.
        return false;
    };
    if !binding.is_bound() {
        return false;
    }
    let name = binding_config.bound_cookie_name(&config.cookie);
    let values = codec::cookie_values(cookie_headers, &name);
    let status = binding.status(
        binding_config,
        values.iter().map(|value| value.as_bytes()),
        now(),
    );
    if status == BindingStatus::BoundCredentialMissing {
        tracing::debug!(
            binding = binding.id(),
            "bound session without a valid bound cookie: treated as anonymous"
        );
        return true;
    }
    false
}

fn decode(stored: &Value) -> Option<DeviceBinding> {
    DeviceBinding::deserialize(stored)
        .inspect_err(|error| tracing::warn!(%error, "unreadable device binding ignored"))
        .ok()
}

/// One of the two DBSC endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST <registration path>`: the browser registers its key.
    Register,
    /// `POST <refresh path>`: the browser proves possession for a new bound cookie.
    Refresh,
}

/// Which endpoint, if any, a request is for (`None` when device binding is off).
pub fn endpoint(config: &SessionConfig, method: &Method, path: &str) -> Option<Endpoint> {
    let binding = config.device_binding.as_ref()?;
    if method != Method::POST {
        return None;
    }
    if path == binding.registration_path() {
        Some(Endpoint::Register)
    } else if path == binding.refresh_path() {
        Some(Endpoint::Refresh)
    } else {
        None
    }
}

/// An endpoint's answer, for the layer (or an integration) to turn into its response.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers (always with `Cache-Control: no-store`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body: JSON or empty.
    pub body: String,
}

impl Reply {
    fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: vec![(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            body: String::new(),
        }
    }

    fn json(mut self, body: String) -> Self {
        let json = HeaderValue::from_static("application/json");
        self.headers.push((CONTENT_TYPE, json));
        self.body = body;
        self
    }

    /// `200 {"continue":false}`: Chrome ends its DBSC session cleanly.
    fn end_session() -> Self {
        Self::new(StatusCode::OK).json(headers::END_SESSION_JSON.to_owned())
    }

    /// `503` with `Retry-After`: transient for Chrome, which keeps its session.
    fn unavailable(config: &SessionConfig, error: &StoreError) -> Self {
        tracing::error!(%error, "device binding endpoint: session store failed");
        let seconds = match &config.on_store_error {
            OnStoreError::ServiceUnavailable { retry_after } => retry_after.as_secs().max(1),
            OnStoreError::Anonymous => 5,
        };
        let mut reply = Self::new(StatusCode::SERVICE_UNAVAILABLE);
        reply
            .headers
            .push((RETRY_AFTER, HeaderValue::from(seconds)));
        reply
    }
}

/// A session as an endpoint found it: where it is, the record, and its binding.
struct Found {
    /// The ID the session cookie carried, to send that cookie again.
    id: SessionId,
    key: StoreKey,
    record: Record,
    binding: Option<DeviceBinding>,
}

/// The live session the request's session cookie names (the first one the store knows).
async fn find(
    manager: &SessionManager,
    store: &dyn SessionStore,
    request: &HeaderMap,
    time: OffsetDateTime,
    bound_as: Option<&str>,
) -> Result<Option<Found>, StoreError> {
    let name = manager.config().cookie.full_name();
    let lines = request.get_all(COOKIE).iter().map(HeaderValue::as_bytes);
    let ids = IdCandidates::parse_with(lines, &name, manager.id_format());
    for id in ids.iter() {
        let key = id.store_key();
        match store.load(&key).await {
            Ok(Some(record)) if record.is_live_at(time) => {
                let binding = record.device_binding.as_deref().and_then(decode);
                // A refresh names its binding: a live session of another (one planted
                // in front of ours from a sibling subdomain) is passed over, not taken
                // for ours and told to end.
                if bound_as.is_some_and(|id| binding.as_ref().is_none_or(|b| b.id() != id)) {
                    continue;
                }
                return Ok(Some(Found {
                    id: id.clone(),
                    key,
                    record,
                    binding,
                }));
            }
            Ok(_) | Err(StoreError::Corrupt(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}

/// Writes `binding` into the found record with compare-and-set: `Ok(false)` when
/// another writer came first (reload and retry).
async fn save(
    store: &dyn SessionStore,
    found: &mut Found,
    binding: &DeviceBinding,
) -> Result<bool, SaveError> {
    let value =
        serde_json::to_value(binding).map_err(|e| SaveError::Store(StoreError::backend(e)))?;
    found.record.device_binding = Some(Box::new(value));
    match store.update(&found.key, &found.record).await {
        Ok(()) => Ok(true),
        Err(UpdateError::Conflict) => Ok(false),
        Err(UpdateError::Missing) => Err(SaveError::Gone),
        Err(UpdateError::Store(error)) => Err(SaveError::Store(error)),
    }
}

enum SaveError {
    /// The session was deleted (or rotated away) meanwhile.
    Gone,
    Store(StoreError),
}

/// Answers a request to one of the endpoints, given its headers.
pub async fn serve(manager: &SessionManager, endpoint: Endpoint, request: &HeaderMap) -> Reply {
    let config = manager.config();
    let (Some(binding), Some(store)) = (&config.device_binding, manager.store()) else {
        return Reply::new(StatusCode::NOT_FOUND);
    };
    // A refresh names its binding.
    let bound_as = match endpoint {
        Endpoint::Register => None,
        Endpoint::Refresh => request
            .get(headers::SESSION_ID)
            .and_then(|value| headers::session_id(value.as_bytes())),
    };
    for _ in 0..MAX_ATTEMPTS {
        let exchange = Exchange {
            config,
            id_format: manager.id_format(),
            binding,
            store: &**store,
            request,
            time: now(),
        };
        let found = match find(manager, exchange.store, request, exchange.time, bound_as).await {
            Ok(found) => found,
            Err(error) => return Reply::unavailable(config, &error),
        };
        let step = match endpoint {
            Endpoint::Register => exchange.register(found).await,
            Endpoint::Refresh => exchange.refresh(found, bound_as).await,
        };
        match step {
            Ok(Some(reply)) => return reply,
            // Lost a compare-and-set: start over from the stored record.
            Ok(None) => continue,
            Err(SaveError::Gone) => {
                return match endpoint {
                    Endpoint::Register => Reply::new(StatusCode::BAD_REQUEST),
                    Endpoint::Refresh => Reply::end_session(),
                }
            }
            Err(SaveError::Store(error)) => return Reply::unavailable(config, &error),
        }
    }
    Reply::unavailable(
        config,
        &StoreError::Unavailable("device binding: too many concurrent writers".into()),
    )
}

/// The bytes of the `Secure-Session-Response` header, if sent once.
fn proof(request: &HeaderMap) -> Option<&[u8]> {
    let mut values = request.get_all(headers::RESPONSE).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first.as_bytes())
}

/// One attempt at an endpoint: what it needs, at one instant.
struct Exchange<'a> {
    config: &'a SessionConfig,
    id_format: Option<&'a dyn IdFormat>,
    binding: &'a DeviceBindingConfig,
    store: &'a dyn SessionStore,
    request: &'a HeaderMap,
    time: OffsetDateTime,
}

/// What an attempt came to: a reply, `None` for a lost compare-and-set (retry), or a
/// failure to save.
type Step = Result<Option<Reply>, SaveError>;

impl Exchange<'_> {
    /// Registration: a logged-in session with a pending binding, and a proof over its
    /// challenge; success binds the key and sends the configuration, the first bound
    /// cookie and the next challenge. Any refusal is a `400`: Chrome gives up and the
    /// session stays unbound.
    async fn register(&self, found: Option<Found>) -> Step {
        let refused = || Ok(Some(Reply::new(StatusCode::BAD_REQUEST)));
        let Some(mut found) = found.filter(|found| found.record.user_id.is_some()) else {
            return refused();
        };
        let (Some(mut binding), Some(proof)) = (found.binding.take(), proof(self.request)) else {
            return refused();
        };
        if let Err(error) = binding.register(proof, self.time) {
            tracing::info!(binding = binding.id(), %error, "device binding registration refused");
            return refused();
        }
        let id = binding.id().to_owned();
        let body = binding
            .session_configuration(self.binding, &self.config.cookie)
            .to_json();
        let step = self
            .renew(&mut found, binding, Reply::new(StatusCode::OK).json(body))
            .await;
        if matches!(step, Ok(Some(_))) {
            tracing::info!(binding = %id, "device bound");
        }
        step
    }

    /// Refresh: the bound session named by the cookie and `Sec-Secure-Session-Id`
    /// (`asked`); no proof gets a `403` and a challenge, a good proof a new bound cookie, a
    /// bad one a `401`.
    async fn refresh(&self, found: Option<Found>, asked: Option<&str>) -> Step {
        let Some((mut found, mut binding)) = found.and_then(|mut found| {
            let binding = found.binding.take()?;
            (binding.is_bound() && asked == Some(binding.id())).then_some((found, binding))
        }) else {
            return Ok(Some(Reply::end_session()));
        };
        let Some(proof) = proof(self.request) else {
            // Chrome signs this challenge and retries at once.
            let Ok((challenge, issued)) =
                binding.retry_challenge(self.time, RETRY_CHALLENGE_LIFETIME)
            else {
                return Ok(Some(Reply::end_session()));
            };
            if issued && !save(self.store, &mut found, &binding).await? {
                return Ok(None);
            }
            let mut reply = Reply::new(StatusCode::FORBIDDEN);
            reply.headers.push((headers::CHALLENGE, challenge));
            return Ok(Some(reply));
        };
        if let Err(error) = binding.refresh(proof, self.time) {
            // Never 403 here (Chrome would retry); 401 makes it drop its session. Nothing
            // is written: a refused proof must not cost the store a write.
            tracing::info!(binding = binding.id(), %error, "device binding refresh refused");
            return Ok(Some(Reply::new(StatusCode::UNAUTHORIZED)));
        }
        self.renew(&mut found, binding, Reply::new(StatusCode::OK))
            .await
    }

    /// After a verified proof: pre-sends the next challenge, saves the binding with
    /// compare-and-set, and adds a new bound cookie and the challenge to `reply`.
    async fn renew(&self, found: &mut Found, mut binding: DeviceBinding, mut reply: Reply) -> Step {
        let lifetime = self.binding.bound_cookie_lifetime();
        let Ok(challenge) = binding.issue_challenge(self.time, lifetime) else {
            return Ok(Some(Reply::new(StatusCode::BAD_REQUEST)));
        };
        // A verified proof is the browser's activity, recorded as a commit records it. The
        // update writes the whole record, and a touch does not move the version its
        // compare-and-set checks: writing back the activity loaded before a touch that
        // landed since undid it, and the session could expire up to a touch interval early.
        // (A proof-less refresh's retry challenge is saved as loaded: a client without the
        // device key must not keep the session alive.)
        found.record.last_active_at = self.time;
        found.record.idle_deadline = self.config.expiry.idle_deadline(self.time);
        if !save(self.store, found, &binding).await? {
            return Ok(None);
        }
        let cookie = binding.bound_cookie(self.binding, &self.config.cookie, self.time);
        reply.headers.push((SET_COOKIE, cookie));
        // As a commit that records activity does: a remembered session's cookie goes
        // again with its new life. Without it, the requests that follow see the activity
        // recorded and refresh nothing, and the browser's cookie expired first, logging out
        // a user whose session was live.
        if let Some(max_age) = codec::max_age(&found.record) {
            let session = codec::session_cookie_with(
                &self.config.cookie,
                &found.id,
                self.id_format,
                Some(max_age),
            );
            reply.headers.push((SET_COOKIE, session));
        }
        reply.headers.push((headers::CHALLENGE, challenge));
        Ok(Some(reply))
    }
}
