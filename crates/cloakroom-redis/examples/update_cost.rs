//! Measures Redis's own CPU per session write: N compare-and-set updates of one session,
//! so the server's `INFO commandstats` gives the µs per `EVALSHA` of the update script.
//!
//! ```text
//! redis-server --port 7399 --save "" --daemonize yes
//! redis-cli -p 7399 CONFIG RESETSTAT
//! CLOAKROOM_REDIS_URL=redis://127.0.0.1:7399 cargo run -p cloakroom-redis --example update_cost
//! redis-cli -p 7399 INFO commandstats
//! ```
//!
//! `UPDATES` (default 20000) sets N; `USER_ID` gives the session a user (who never changes
//! between writes, so the script never needs to touch the user's index). The session holds
//! a counter and a short string, like the benchmark's S3 session.
//!
//! Wall-clock µs swing by half on a loaded machine; instruction counts do not. For those,
//! run the server under callgrind, counting only inside `EVALSHA`, and divide by its calls:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect=evalShaCommand redis-server --port 7398 --save ""
//! callgrind_control -z; (run this example against port 7398); callgrind_control -d
//! callgrind_annotate callgrind.out.PID.1 | grep 'PROGRAM TOTALS'
//! ```

use cloakroom::record::now;
use cloakroom::{Record, SessionId, SessionStore};
use cloakroom_redis::RedisStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("CLOAKROOM_REDIS_URL")?;
    let updates: u64 = std::env::var("UPDATES").map_or(Ok(20_000), |n| n.parse())?;
    let user = std::env::var("USER_ID")
        .ok()
        .filter(|user| !user.is_empty());
    let store = RedisStore::connect(&url).await?;

    let start = now();
    let mut record = Record::new(
        start,
        Some(start + time::Duration::minutes(30)),
        Some(start + time::Duration::days(1)),
    );
    record.user_id = user;
    record.data.insert("counter".into(), 0.into());
    record.data.insert("user".into(), "bench".into());
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await?;

    for counter in 1..=updates {
        record.data.insert("counter".into(), counter.into());
        // Each write moves the idle deadline, as writes a request apart do: thousands of
        // these fall in one millisecond, and a deadline that did not move would spare the
        // script its PEXPIREAT.
        let counter_ms = i64::try_from(counter)?;
        record.last_active_at = start + time::Duration::milliseconds(counter_ms);
        record.idle_deadline = Some(record.last_active_at + time::Duration::minutes(30));
        store.update(&key, &record).await?;
        record.version += 1;
    }
    let loaded = store.load(&key).await?.ok_or("the session is gone")?;
    assert_eq!(loaded.data["counter"], updates, "every update landed");
    store.delete(&key).await?;
    println!("{updates} updates of one session");
    Ok(())
}
