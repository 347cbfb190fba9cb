//! What is measured: the scenarios, the libraries and the stores.

use serde::{Deserialize, Serialize};

/// One request shape, served identically by every library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scenario {
    /// S1: a handler that never touches the session, requested with no cookie.
    Untouched,
    /// S2: read one key of an existing session.
    Read,
    /// S3: read and write one key (increment a counter) of an existing session.
    Write,
    /// S4: rotate the ID of an existing session.
    Login,
    /// S5: 32 concurrent writers incrementing one counter of one session.
    Contended,
}

impl Scenario {
    /// All of them, in report order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Untouched,
        Scenario::Read,
        Scenario::Write,
        Scenario::Login,
        Scenario::Contended,
    ];

    /// The short label used in tables (`S1 untouched`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Untouched => "S1 untouched",
            Scenario::Read => "S2 read",
            Scenario::Write => "S3 write",
            Scenario::Login => "S4 login",
            Scenario::Contended => "S5 contended",
        }
    }

    /// The route that serves it (S5 uses the write route from 32 clients at once).
    pub fn path(self) -> &'static str {
        match self {
            Scenario::Untouched => routes::UNTOUCHED,
            Scenario::Read => routes::READ,
            Scenario::Write | Scenario::Contended => routes::WRITE,
            Scenario::Login => routes::ROTATE,
        }
    }

    /// Whether the request is a POST (writes) or a GET.
    pub fn is_post(self) -> bool {
        !matches!(self, Scenario::Untouched | Scenario::Read)
    }

    /// Whether the request carries the cookie of a seeded session.
    pub fn needs_session(self) -> bool {
        self != Scenario::Untouched
    }
}

/// The routes every benchmark app serves.
pub mod routes {
    /// Never touches the session.
    pub const UNTOUCHED: &str = "/untouched";
    /// Creates a session holding `counter = 0` and `user = "bench"`.
    pub const SEED: &str = "/seed";
    /// Responds with the session's `counter`.
    pub const READ: &str = "/read";
    /// Increments the session's `counter` and responds with the new value.
    pub const WRITE: &str = "/write";
    /// Gives the session a new ID, keeping its data.
    pub const ROTATE: &str = "/rotate";
    /// The key every route reads or writes.
    pub const COUNTER: &str = "counter";
}

/// Who serves the routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Library {
    /// This project, on axum.
    Cloakroom,
    /// This project on actix-web (`cloakroom-actix`), on the same actix-web runtime and
    /// worker settings as actix-session.
    CloakroomActix,
    /// tower-sessions 0.15 (memory) or 0.14 (the published SQL and Redis stores), on axum.
    TowerSessions,
    /// actix-session 0.11, on actix-web 4.
    ActixSession,
    /// A bare axum handler doing the same store operations directly: the floor.
    Floor,
    /// A bare axum app with no session layer at all (S1's reference).
    BareAxum,
}

impl Library {
    /// Its display name.
    pub fn name(self) -> &'static str {
        match self {
            Library::Cloakroom => "cloakroom",
            Library::CloakroomActix => "cloakroom (actix-web)",
            Library::TowerSessions => "tower-sessions",
            Library::ActixSession => "actix-session",
            Library::Floor => "floor",
            Library::BareAxum => "bare axum",
        }
    }

    /// Its name in target slugs, `--only` filters and `bench profile`: the display name
    /// without spaces or brackets, so it needs no quoting in a shell.
    pub fn slug(self) -> &'static str {
        match self {
            Library::CloakroomActix => "cloakroom-actix",
            Library::BareAxum => "bare-axum",
            other => other.name(),
        }
    }

    /// Whether it is a peer library (compared against cloakroom).
    pub fn is_peer(self) -> bool {
        matches!(self, Library::TowerSessions | Library::ActixSession)
    }

    /// Whether actix-web serves it (the rest are axum apps).
    pub fn on_actix(self) -> bool {
        matches!(self, Library::ActixSession | Library::CloakroomActix)
    }
}

/// Where the session state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreKind {
    /// In-process map.
    Memory,
    /// An SQLite file (WAL).
    Sqlite,
    /// PostgreSQL on loopback.
    Postgres,
    /// Redis on loopback.
    Redis,
    /// No server-side state: the session is an encrypted cookie.
    Cookie,
    /// No store (the bare axum app).
    None,
}

impl StoreKind {
    /// The stores, in report order.
    pub const ALL: [StoreKind; 5] = [
        StoreKind::Memory,
        StoreKind::Sqlite,
        StoreKind::Postgres,
        StoreKind::Redis,
        StoreKind::Cookie,
    ];

    /// Its display name.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "SQLite",
            StoreKind::Postgres => "PostgreSQL",
            StoreKind::Redis => "Redis",
            StoreKind::Cookie => "cookie",
            StoreKind::None => "-",
        }
    }
}

/// One library on one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// Who serves.
    pub library: Library,
    /// On what.
    pub store: StoreKind,
}

impl Target {
    /// Every target the benchmark runs: each library on each store it has.
    pub fn all() -> Vec<Target> {
        let mut targets = vec![Target::new(Library::BareAxum, StoreKind::None)];
        for store in StoreKind::ALL {
            let mut libraries = vec![Library::Cloakroom];
            if matches!(
                store,
                StoreKind::Memory | StoreKind::Sqlite | StoreKind::Postgres | StoreKind::Redis
            ) {
                libraries.push(Library::TowerSessions);
            }
            // cloakroom on actix-web runs where actix-session has a store, so each of its
            // cells has a like-for-like peer on the same runtime.
            if matches!(store, StoreKind::Redis | StoreKind::Cookie) {
                libraries.push(Library::CloakroomActix);
                libraries.push(Library::ActixSession);
            }
            libraries.push(Library::Floor);
            targets.extend(
                libraries
                    .into_iter()
                    .map(|library| Target::new(library, store)),
            );
        }
        targets
    }

    /// `library` on `store`.
    pub fn new(library: Library, store: StoreKind) -> Self {
        Self { library, store }
    }

    /// The scenarios it runs: the bare app only has S1.
    pub fn scenarios(self) -> &'static [Scenario] {
        if self.library == Library::BareAxum {
            &Scenario::ALL[..1]
        } else {
            &Scenario::ALL
        }
    }

    /// `library/store`, for logs and file names.
    pub fn slug(self) -> String {
        format!("{}/{}", self.library.slug(), self.store.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_has_cloakroom_and_a_floor() {
        let targets = Target::all();
        for store in StoreKind::ALL {
            for library in [Library::Cloakroom, Library::Floor] {
                assert!(
                    targets.contains(&Target::new(library, store)),
                    "{library:?} {store:?}"
                );
            }
        }
        assert!(!targets.contains(&Target::new(Library::ActixSession, StoreKind::Memory)));
    }

    #[test]
    fn cloakroom_on_actix_runs_beside_actix_session() {
        let targets = Target::all();
        for store in StoreKind::ALL {
            assert_eq!(
                targets.contains(&Target::new(Library::CloakroomActix, store)),
                targets.contains(&Target::new(Library::ActixSession, store)),
                "{store:?}"
            );
        }
        assert_eq!(
            Target::new(Library::CloakroomActix, StoreKind::Redis).slug(),
            "cloakroom-actix/Redis"
        );
        assert_eq!(
            Target::new(Library::BareAxum, StoreKind::None).slug(),
            "bare-axum/-"
        );
    }
}
