//! The reverse configuration `ferry cutover --reverse R.yaml` writes: the
//! forward file's target becomes the source and its source the target,
//! taken from the file as written (so `${ENV}` placeholders for passwords
//! stay placeholders), with the recorded start positions.

use anyhow::{Context, Result, bail};
use serde_yaml_ng::{Mapping, Value};

use super::StartPosition;
use crate::config::Config;

/// What the reverse file records besides the forward configuration.
pub struct Recorded<'a> {
    /// Each new-side master's position when both sides were equal.
    pub positions: &'a [StartPosition],
    /// The smallest `repl-backlog-ttl` of those masters (seconds), if read.
    pub backlog_ttl: Option<u64>,
    /// Masters where ferry created the backlog.
    pub created: &'a [String],
    /// The forward configuration's path (for the header).
    pub forward: &'a str,
    /// When (UTC, RFC 3339-like text).
    pub at: String,
}

fn key(k: &str) -> Value {
    Value::String(k.to_owned())
}

/// `url` and `tls` of a raw endpoint mapping.
fn endpoint(raw: &Value, side: &str) -> Result<Mapping> {
    let m = raw
        .get(side)
        .and_then(Value::as_mapping)
        .with_context(|| format!("the forward configuration has no {side} section"))?;
    let mut out = Mapping::new();
    for k in ["url", "tls"] {
        if let Some(v) = m.get(k) {
            out.insert(key(k), v.clone());
        }
    }
    Ok(out)
}

/// `host:port` with the port plus one (the reverse daemon's listener).
fn next_port(listen: &str) -> Option<String> {
    let (host, port) = ferry_ops::split_host_port(listen)?;
    let port = port.checked_add(1)?;
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The text of the reverse configuration for the forward file `text`
/// (parsed as `cfg`).
pub fn reverse_config(text: &str, cfg: &Config, rec: &Recorded<'_>) -> Result<String> {
    if cfg.filter.db_prefix.is_some() {
        bail!("--reverse: filter.db_prefix cannot be undone by a reverse run (remove --reverse)");
    }
    let raw: Value = serde_yaml_ng::from_str(text).context("the forward configuration")?;
    let mut source = endpoint(&raw, "target")?;
    let positions = serde_yaml_ng::to_value(rec.positions)?;
    source.insert(key("start_positions"), positions);
    let mut target = endpoint(&raw, "source")?;
    target.insert(key("checkpoints"), Value::Bool(true));
    let mut out = Mapping::new();
    if let Some(mode) = raw.get("mode") {
        out.insert(key("mode"), mode.clone());
    }
    out.insert(key("source"), Value::Mapping(source));
    out.insert(key("target"), Value::Mapping(target));
    out.insert(
        key("state_dir"),
        Value::String(format!("{}-reverse", cfg.state_dir.display())),
    );
    let mut http = raw
        .get("http")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    if let Some(listen) = next_port(&cfg.http.listen) {
        http.insert(key("listen"), Value::String(listen));
    }
    if !http.is_empty() {
        out.insert(key("http"), Value::Mapping(http));
    }
    if let Some(filter) = raw.get("filter").and_then(Value::as_mapping) {
        let mut f = Mapping::new();
        for k in ["include_prefixes", "exclude_prefixes", "dbs"] {
            if let Some(v) = filter.get(k) {
                f.insert(key(k), v.clone());
            }
        }
        if !f.is_empty() {
            out.insert(key("filter"), Value::Mapping(f));
        }
    }
    if let Some(spool) = raw.get("spool") {
        out.insert(key("spool"), spool.clone());
    }
    let body = serde_yaml_ng::to_string(&Value::Mapping(out))?;
    let ttl = rec.backlog_ttl.map_or_else(
        || "repl-backlog-ttl (3600 s by default; CONFIG GET was refused)".to_owned(),
        |t| format!("repl-backlog-ttl = {t} s"),
    );
    let created = if rec.created.is_empty() {
        String::new()
    } else {
        format!(
            "# ferry created a replication backlog on {} (no replica there).\n",
            rec.created.join(", ")
        )
    };
    Ok(format!(
        "# Reverse of {forward}, written by `ferry cutover --reverse` at {at}.\n\
         # Run it with `ferry run --config <this file>` once the forward ferry is stopped (or\n\
         # alongside it with mode: two_way). It continues each master's stream from the position\n\
         # both sides shared (PSYNC +CONTINUE); it never takes a full sync on its own.\n\
         # Start it soon: a master frees its backlog once it has had no replica for its\n\
         # {ttl}, and every write there beyond repl-backlog-size also pushes the position out.\n\
         {created}",
        forward = rec.forward,
        at = rec.at,
    ) + &body)
}

/// Writes the reverse configuration `path` for the forward configuration
/// file `forward` (parsed as `cfg`) and prints what was recorded.
pub fn write(
    forward: &std::path::Path,
    cfg: &Config,
    path: &std::path::Path,
    positions: &[StartPosition],
    backlog_ttl: Option<u64>,
    created: &[String],
) -> Result<()> {
    let text = std::fs::read_to_string(forward)
        .with_context(|| format!("cannot read {}", forward.display()))?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rec = Recorded {
        positions,
        backlog_ttl,
        created,
        forward: &forward.display().to_string(),
        at: format!("unix time {at}"),
    };
    let out = reverse_config(&text, cfg, &rec)?;
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    for p in positions {
        println!(
            "recorded {} at replid {} offset {}",
            p.master, p.replid, p.offset
        );
    }
    println!(
        "reverse configuration written to {} (start it with `ferry run --config {}`)",
        path.display(),
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_sides_and_keeps_placeholders() {
        let text = "source: { url: \"redis://:${PW}@old:6379\" }\n\
                    target: { url: \"redis://new:7000\", checkpoints: true, tls: { insecure: true } }\n\
                    state_dir: /var/lib/ferry\n\
                    http: { listen: \"127.0.0.1:9121\" }\n\
                    filter: { include_prefixes: [\"a:\"] }\n";
        let cfg = Config::parse_with(text, &|_| Some("pw".into())).expect("parse");
        let positions = [StartPosition {
            master: "new:7000".into(),
            replid: "b".repeat(40),
            offset: 42,
        }];
        let rec = Recorded {
            positions: &positions,
            backlog_ttl: Some(3600),
            created: &["new:7000".to_owned()],
            forward: "ferry.yaml",
            at: "now".into(),
        };
        let out = reverse_config(text, &cfg, &rec).expect("reverse");
        assert!(out.contains("${PW}"), "{out}");
        assert!(out.contains("repl-backlog-ttl = 3600 s"), "{out}");
        let r = Config::parse_with(&out, &|_| Some("pw".into())).expect("reverse parses");
        assert_eq!(r.source.url, "redis://new:7000");
        assert_eq!(r.target.url, "redis://:pw@old:6379");
        assert_eq!(r.source.start_positions, positions);
        assert_eq!(r.state_dir.display().to_string(), "/var/lib/ferry-reverse");
        assert_eq!(r.http.listen, "127.0.0.1:9122");
        assert!(r.source.tls.insecure);
    }
}
