//! Counting what a client sends a store, by reading the client's half of the protocol:
//! Redis commands (RESP arrays) and PostgreSQL statements (`Query` and `Execute` messages).

/// A protocol whose client messages can be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RESP: one command per top-level array.
    Redis,
    /// PostgreSQL's frontend protocol: one statement per simple `Query` (`Q`) or
    /// extended-protocol `Execute` (`E`). Pool health checks (a bare `Sync`) are not
    /// statements; they show up in the round-trip count instead.
    Postgres,
}

/// Counts complete client messages in a byte stream fed in arbitrary chunks.
#[derive(Debug)]
pub struct Counter {
    protocol: Protocol,
    buffer: Vec<u8>,
    /// PostgreSQL: still in the untyped startup phase.
    starting: bool,
}

impl Counter {
    /// A counter for a new connection.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            buffer: Vec::new(),
            starting: true,
        }
    }

    /// Takes the next chunk of the client's stream; returns how many counted messages it
    /// completed.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        self.buffer.extend_from_slice(chunk);
        let mut counted = 0;
        let mut at = 0;
        loop {
            let step = match self.protocol {
                Protocol::Redis => resp_command(&self.buffer[at..]).map(|len| (len, true)),
                Protocol::Postgres => postgres_message(&mut self.starting, &self.buffer[at..]),
            };
            match step {
                Some((len, counts)) => {
                    at += len;
                    counted += u64::from(counts);
                }
                None => break,
            }
        }
        self.buffer.drain(..at);
        counted
    }
}

/// The length of the complete PostgreSQL frontend message at the start of `bytes`, and
/// whether it ends a round trip.
fn postgres_message(starting: &mut bool, bytes: &[u8]) -> Option<(usize, bool)> {
    if *starting {
        // Untyped: length (including itself), then a protocol code. SSL and GSS
        // requests are followed by another untyped message; the startup message ends
        // the phase.
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let code = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
        if bytes.len() < len {
            return None;
        }
        const SSL_REQUEST: u32 = 80_877_103;
        const GSS_REQUEST: u32 = 80_877_104;
        if code != SSL_REQUEST && code != GSS_REQUEST {
            *starting = false;
        }
        return Some((len.max(8), false));
    }
    let kind = *bytes.first()?;
    let len = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?) as usize;
    if bytes.len() < len + 1 {
        return None;
    }
    Some((len + 1, kind == b'Q' || kind == b'E'))
}

/// The length of the complete RESP command at the start of `bytes`, if it is complete.
fn resp_command(bytes: &[u8]) -> Option<usize> {
    fn line(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&bytes[at..end], end + 2))
    }
    fn number(text: &[u8]) -> Option<i64> {
        std::str::from_utf8(text).ok()?.parse().ok()
    }
    let (head, mut at) = line(bytes, 0)?;
    match head.first()? {
        b'*' => {
            let items = number(&head[1..])?;
            for _ in 0..items.max(0) {
                let (bulk, next) = line(bytes, at)?;
                let len = usize::try_from(number(bulk.get(1..)?)?).ok()?;
                at = next + len + 2;
                if bytes.len() < at {
                    return None;
                }
            }
            Some(at)
        }
        // An inline command: one line.
        _ => Some(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_commands_are_counted_across_chunks() {
        let stream = b"*2\r\n$3\r\nGET\r\n$5\r\nab\r\nc\r\n*1\r\n$4\r\nPING\r\n";
        for split in 0..stream.len() {
            let mut counter = Counter::new(Protocol::Redis);
            let total = counter.feed(&stream[..split]) + counter.feed(&stream[split..]);
            assert_eq!(total, 2, "split at {split}");
        }
    }

    #[test]
    fn postgres_round_trips_are_counted_after_startup() {
        let mut stream = Vec::new();
        stream.extend(8_u32.to_be_bytes());
        stream.extend(80_877_103_u32.to_be_bytes()); // SSLRequest
        stream.extend(9_u32.to_be_bytes());
        stream.extend(196_608_u32.to_be_bytes()); // startup
        stream.push(0);
        for kind in [b'P', b'B', b'E', b'S', b'S', b'Q'] {
            stream.push(kind);
            stream.extend(5_u32.to_be_bytes());
            stream.push(b'x');
        }
        let mut counter = Counter::new(Protocol::Postgres);
        let total: u64 = stream.chunks(3).map(|chunk| counter.feed(chunk)).sum();
        assert_eq!(total, 2);
    }
}
