//! Which cluster slot a command or pipeline addresses, so that the cluster connection can
//! tell one shard failing from all of them (redis-rs computes the same, but privately).

use redis::{Arg, Cmd, Pipeline};

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag (every key this store writes
/// has one), or of the whole key.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&byte| byte == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

/// The slot of the first key `command` names, if it names one.
///
/// Scripts (`EVAL`, `EVALSHA`) list their keys after the script and the key count; the
/// commands this store sends otherwise take their key first. A few commands take no key:
/// they address no slot (and so are not counted for or against any shard).
pub(crate) fn command_slot(command: &Cmd) -> Option<u16> {
    let mut args = command.args_iter().filter_map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        Arg::Cursor => None,
    });
    let name = args.next()?;
    let is = |candidate: &str| name.eq_ignore_ascii_case(candidate.as_bytes());
    if [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ]
    .into_iter()
    .any(is)
    {
        let _script = args.next()?;
        if args.next()? == b"0" {
            return None;
        }
    } else if KEYLESS.into_iter().any(is) {
        return None;
    }
    args.next().map(key_slot)
}

/// The slot of the first command of `pipeline` that addresses one (redis-rs routes a
/// pipeline the same way).
pub(crate) fn pipeline_slot(pipeline: &Pipeline) -> Option<u16> {
    pipeline.cmd_iter().find_map(command_slot)
}

/// Commands whose first argument is not a key.
const KEYLESS: [&str; 14] = [
    "ASKING", "CLIENT", "CLUSTER", "CONFIG", "DBSIZE", "EXEC", "FUNCTION", "INFO", "MULTI", "PING",
    "READONLY", "SCAN", "SCRIPT", "WAIT",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_the_cluster_spec() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(
            key_slot(b"{}foo"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}foo") % 16384
        );
    }

    #[test]
    fn commands_address_their_first_key() {
        let key = "cloakroom:s:{abc}";
        let slot = Some(key_slot(b"abc"));
        assert_eq!(command_slot(redis::cmd("HMGET").arg(key).arg("v")), slot);
        assert_eq!(
            command_slot(redis::cmd("EVALSHA").arg("f00d").arg(1).arg(key).arg("x")),
            slot
        );
        assert_eq!(command_slot(redis::cmd("evalsha").arg("f00d").arg(0)), None);
        assert_eq!(command_slot(redis::cmd("WAIT").arg(1).arg(300)), None);
        assert_eq!(command_slot(&redis::cmd("PING")), None);
        let mut pipeline = redis::pipe();
        pipeline.cmd("WAIT").arg(1).arg(0).cmd("EXISTS").arg(key);
        assert_eq!(pipeline_slot(&pipeline), slot);
    }
}
