//! A small sans-IO parser of Server-Sent Events (the genesis watch stream).
//!
//! Feed it the bytes of the body as they come, in chunks of any size; it
//! returns the events completed by each chunk.

/// One event of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` name (`message` when none was given).
    pub event: String,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk`; returns the events it completed.
    #[must_use]
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if let Some(event) = self.line(line) {
                events.push(event);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if data.is_empty() {
                return None;
            }
            let event = if event.is_empty() {
                "message".to_owned()
            } else {
                event
            };
            return Some(SseEvent {
                event,
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None; // a comment: keep-alive
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            _ => {} // id, retry: not needed
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let body = b": keep-alive\n\nevent: snapshot\nid: 3\ndata: {\"version\":3}\n\r\nevent: change\ndata: a\ndata: b\n\n";
        for size in 1..body.len() {
            let mut parser = SseParser::new();
            let events: Vec<SseEvent> = body.chunks(size).flat_map(|c| parser.push(c)).collect();
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "snapshot".into(),
                        data: "{\"version\":3}".into()
                    },
                    SseEvent {
                        event: "change".into(),
                        data: "a\nb".into()
                    },
                ],
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn an_event_without_a_name_is_a_message() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data:x\n\n")[0].event, "message");
    }
}
