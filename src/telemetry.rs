//! Log setup. One line per request is written by `gateway`; this only picks the format.
//!
//! The JSON format is [`JsonLines`], written straight into the line's buffer. tracing-subscriber's
//! own JSON format gathers an event's fields through `serde_json` into an `io::Write` adapter over
//! the buffer (a UTF-8 check per piece) and formats the time through `fmt`: 17.4k instructions
//! for an access-log line (`INSTRUCTIONS=1 scripts/bench-gateway.sh`, `prod log RS256`), a
//! quarter of what the gateway spends on the request. The lines keep its shape: `timestamp`,
//! `level`, the event's fields (its `message` among them), and `span`/`spans` inside a span.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    // A second init (tests, reload) keeps the first subscriber; that is fine.
    let _ = match log.format {
        // `json()` for its span-field format, which `JsonLines` copies into `span`.
        LogFormat::Json => builder.json().event_format(JsonLines).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// One JSON object per event, on one line.
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut out: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        out.write_str("{\"timestamp\":\"")?;
        out.write_str(timestamp(std::time::SystemTime::now()).as_str())?;
        out.write_str("\",\"level\":\"")?;
        out.write_str(event.metadata().level().as_str())?;
        out.write_char('"')?;
        let mut fields = Fields {
            out: &mut out,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some(scope) = ctx.event_scope() {
            let mut spans = String::new();
            let mut current = String::new();
            for span in scope.from_root() {
                current.clear();
                current.push_str("{\"name\":");
                string(&mut current, span.name())?;
                let extensions = span.extensions();
                // The `json()` builder's `JsonFields` wrote them as an object, `{...}` (or
                // nothing without fields).
                let inner = extensions
                    .get::<FormattedFields<N>>()
                    .and_then(|fields| fields.trim().strip_prefix('{')?.strip_suffix('}'))
                    .filter(|inner| !inner.is_empty());
                if let Some(inner) = inner {
                    current.push(',');
                    current.push_str(inner);
                }
                current.push('}');
                spans.push(if spans.is_empty() { '[' } else { ',' });
                spans.push_str(&current);
            }
            if !spans.is_empty() {
                write!(out, ",\"span\":{current},\"spans\":{spans}]")?;
            }
        }
        out.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.out.write_char(',')?;
                string(self.out, field.name())?;
                self.out.write_char(':')?;
                value(self.out)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| string(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    /// JSON has no NaN or infinity; they become `null`.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    /// `%value` and `?value` fields, and the message: their text, as a JSON string.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(Escaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `text` as a JSON string.
fn string(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string (RFC 8259 §7): `"`, `\` and the
/// control characters; the rest, all of Unicode, passes as it is.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            return self.0.write_str(text);
        }
        for c in text.chars() {
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if u32::from(c) < 0x20 => write!(self.0, "\\u{:04x}", u32::from(c))?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `2026-12-02T07:02:29.126504Z`: RFC 3339 in UTC, to the microsecond.
fn timestamp(now: std::time::SystemTime) -> Timestamp {
    let at = time::OffsetDateTime::from(now);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    digits(&mut text[0..4], u32::try_from(at.year()).unwrap_or(0));
    digits(&mut text[5..7], u32::from(u8::from(at.month())));
    digits(&mut text[8..10], u32::from(at.day()));
    digits(&mut text[11..13], u32::from(at.hour()));
    digits(&mut text[14..16], u32::from(at.minute()));
    digits(&mut text[17..19], u32::from(at.second()));
    digits(&mut text[20..26], at.microsecond());
    Timestamp(text)
}

/// A timestamp's text, kept on the stack.
struct Timestamp([u8; 27]);

impl Timestamp {
    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

/// `value`'s last `out.len()` decimal digits, zero-padded.
fn digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, UNIX_EPOCH};

    /// Every line the events of `emit` produce under [`JsonLines`], parsed.
    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(JsonLines)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = written.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_access_line_is_one_json_object_with_every_field() {
        let method = http::Method::GET;
        let got = lines(|| {
            tracing::info!(request_id = "abc", %method, path = "/a", status = 200u16, latency_ms = 1.5, user = "-", ok = true, delta = -3i64, "request");
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["request_id"], "abc");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/a");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["ok"], true);
        assert_eq!(line["delta"], -3);
        assert!(line.get("span").is_none());
        let stamp = line["timestamp"].as_str().expect("timestamp");
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
    }

    #[test]
    fn any_text_arrives_as_it_was_sent() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} nul \0 é 日本 😀";
        let got = lines(|| {
            tracing::warn!(detail = nasty, shown = %nasty, debugged = ?nasty, "a \"message\"\n");
            tracing::info!(infinite = f64::INFINITY, nan = f64::NAN, "x");
        });
        assert_eq!(got[0]["detail"], nasty);
        assert_eq!(got[0]["shown"], nasty);
        assert_eq!(got[0]["debugged"], format!("{nasty:?}"));
        assert_eq!(got[0]["message"], "a \"message\"\n");
        assert_eq!(got[1]["infinite"], serde_json::Value::Null);
        assert_eq!(got[1]["nan"], serde_json::Value::Null);
    }

    #[test]
    fn a_line_inside_a_span_names_it_and_its_fields() {
        let got = lines(|| {
            let outer = tracing::info_span!("request", trace_id = "4bf9");
            let _outer = outer.enter();
            let inner = tracing::info_span!("persona");
            let _inner = inner.enter();
            tracing::info!("calling");
        });
        let line = &got[0];
        assert_eq!(line["span"], serde_json::json!({ "name": "persona" }));
        assert_eq!(
            line["spans"],
            serde_json::json!([{ "name": "request", "trace_id": "4bf9" }, { "name": "persona" }])
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_to_the_microsecond() {
        let at = UNIX_EPOCH + Duration::from_micros(1_764_659_349_126_504);
        assert_eq!(timestamp(at).as_str(), "2025-12-02T07:09:09.126504Z");
        assert_eq!(timestamp(UNIX_EPOCH).as_str(), "1970-01-01T00:00:00.000000Z");
    }
}
