//! Flask-Session's server-side sessions in Redis (`SESSION_TYPE = "redis"`, Flask-Session
//! 0.8), read and written in its own layout.
//!
//! - The cookie (`session` by default) carries the session ID: `secrets.token_urlsafe(32)`,
//!   43 characters, the same shape as a cloakroom ID. With `SESSION_USE_SIGNER` it is
//!   `ID.SIGNATURE`, itsdangerous' `Signer` with the salt `flask-session` over the app's
//!   `SECRET_KEY` ([`FlaskSessionIds::signed`]).
//! - Redis holds `session:ID` (`SESSION_KEY_PREFIX`): the session dict in MessagePack
//!   (`SESSION_SERIALIZATION_FORMAT = "msgpack"`, the default), with a TTL of
//!   `PERMANENT_SESSION_LIFETIME` from the last write.
//!
//! # What sharing costs
//!
//! **The raw session ID is the Redis key**, because that is where Flask-Session looks.
//! cloakroom's hashing at rest cannot apply while both apps share the sessions: a Redis
//! dump, replica or backup is a list of valid cookies. The store sees a reversible key
//! ([`SessionId::with_reversible_key`](cloakroom::SessionId::with_reversible_key)), so
//! handles and logs still never show an ID. Once the Flask app is gone, move to
//! cloakroom's own layout (README, *Migrating from Flask*).
//!
//! A per-user index lives beside Flask's keys, one Redis set of session IDs per user under
//! a prefix Flask-Session never reads ([`FlaskRedisStore::with_index_prefix`]), so listing
//! and revoking a user's sessions read only that user's sessions, 500 at a time, pruning
//! members whose session is gone or now another user's and deleting the user's sessions
//! past their deadline (an unreadable one is left for a revocation, which deletes it).
//! cloakroom indexes the sessions it writes; a login Flask makes is not indexed until
//! cloakroom writes that session. Flask has no absolute timeout: cloakroom keeps the one
//! of sessions it creates, in `_cloakroom`, and never loads a session past it, but Flask
//! serves the key for as long as its TTL runs, which Flask moves on at every request. A
//! listing or revocation of the user's sessions deletes such a session. The user's index
//! set, though, expires with the latest deadline of the sessions cloakroom wrote for the
//! user, so a session that Flask alone keeps alive beyond that is no longer found through
//! it (a known limit of sharing: only the Flask app could keep the set alive).
//!
//! A value Flask stored as a type MessagePack cannot say in JSON (a `datetime`, an
//! extension type, a map with non-text keys) makes the session unreadable to cloakroom:
//! it is logged and treated as absent. `bytes` read as
//! [`tagged::bytes`](crate::tagged::bytes) and write back as bytes.
//!
//! # Concurrent writes
//!
//! Flask-Session itself saves the whole dict, last write wins. cloakroom keeps its
//! guarantee against Flask's writes too. Its version counter, activity time and idle
//! deadline ride in `_cloakroom`, which Flask carries along untouched, and every value
//! cloakroom writes ends with a fingerprint of the bytes before it (the first 60 bits of
//! their SHA-1). While the bytes still match it, the counter is current; once Flask has
//! changed the dict they do not, and the record's version is the fingerprint of the bytes
//! themselves (high bit set), a version the session has not had before (barring a 60-bit
//! collision). An update reads the value, checks
//! the version, and writes in one Lua script only if the bytes are still those it read
//! (`redis.sha1hex`), moving the index entry in the same step: a Flask write in between is
//! a conflict, and cloakroom re-applies its changes to what Flask wrote. Touch, rename and
//! revocation are compare-and-sets on the bytes the same way; an update or touch costs two
//! round trips (a read and the script).

mod admin;
mod cas;
mod ids;
mod index;
mod msgpack;
mod scripts;
mod session_store;
mod store;
mod value;

pub use ids::{FlaskSessionIds, SIGNER_SALT};
pub use store::{FlaskRedisStore, DEFAULT_PREFIX};
