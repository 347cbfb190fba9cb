//! Redis's own CPU for cloakroom's compare-and-set update script, read from
//! `INFO commandstats` around a run of S3 writes (the performance issue's target 3).

use crate::env::Env;
use crate::inprocess;
use crate::results::ScriptCost;
use crate::scenario::{Library, Scenario, StoreKind, Target};

/// Runs `requests` cloakroom S3 writes on Redis in process and reports the server's
/// microseconds per `EVALSHA`. Resets the server's command statistics first, so nothing
/// else may use that Redis meanwhile (the harness runs alone).
///
/// # Errors
/// Redis unreachable, or no `EVALSHA` counted (the script was not what the writes ran).
pub fn measure(env: &Env, requests: u64) -> Result<ScriptCost, String> {
    command_stats(env, "RESETSTAT")?;
    inprocess::repeat(
        Target::new(Library::Cloakroom, StoreKind::Redis),
        env,
        Scenario::Write,
        requests,
    )?;
    let info = command_stats(env, "INFO")?;
    let (calls, usec) = evalsha_stats(&info).ok_or("Redis counted no EVALSHA")?;
    Ok(ScriptCost {
        requests,
        calls,
        usec_per_call: usec as f64 / calls as f64,
    })
}

/// `CONFIG RESETSTAT` (returns "") or `INFO commandstats` (returns the section).
fn command_stats(env: &Env, what: &str) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let mut connection = env.redis_connection().await?;
        let command = if what == "RESETSTAT" {
            redis::cmd("CONFIG").arg("RESETSTAT").clone()
        } else {
            redis::cmd("INFO").arg("commandstats").clone()
        };
        let reply: redis::Value = command
            .query_async(&mut connection)
            .await
            .map_err(|error| format!("Redis {what}: {error}"))?;
        Ok(match reply {
            redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            _ => String::new(),
        })
    })
}

/// `calls` and `usec` of the `cmdstat_evalsha` line.
fn evalsha_stats(info: &str) -> Option<(u64, u64)> {
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))?;
    let field = |name: &str| {
        line.split(',')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse::<u64>().ok())
    };
    let calls = field("calls").filter(|&calls| calls > 0)?;
    Some((calls, field("usec")?))
}

#[cfg(test)]
mod tests {
    use super::evalsha_stats;

    #[test]
    fn reads_the_evalsha_line() {
        let info = "# Commandstats\r\ncmdstat_hmget:calls=5,usec=9,usec_per_call=1.80\r\n\
                    cmdstat_evalsha:calls=20001,usec=190000,usec_per_call=9.50,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(evalsha_stats(info), Some((20001, 190000)));
        assert_eq!(evalsha_stats("cmdstat_get:calls=1,usec=1"), None);
        assert_eq!(evalsha_stats("cmdstat_evalsha:calls=0,usec=0"), None);
    }
}
