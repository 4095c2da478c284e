//! `ferry rdb FILE`: decode a dump offline.
//!
//! * `--format resp`: commands for `redis-cli --pipe` that recreate the data
//!   (`SELECT n` before keys of db n; `--restore` uses `RESTORE` payloads).
//! * `--format json`: one JSON object per key, one per line.
//! * `--format summary`: counts and sizes per type and db, biggest keys, aux fields.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use ferry_rdb::commands::{CommandBuilder, CommandOptions};
use ferry_rdb::{Item, KeyHeader, RdbReader, Value};

use crate::rdb_cmd::json::JsonWriter;

mod json;
mod precheck;
mod summary;

/// Output format of `ferry rdb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// RESP commands for `redis-cli --pipe`.
    Resp,
    /// One JSON object per key per line.
    Json,
    /// Counts, sizes and the biggest keys.
    Summary,
}

/// Arguments of `ferry rdb`.
#[derive(Debug, Args)]
pub struct RdbArgs {
    /// The dump to read; `-` reads standard input.
    pub file: PathBuf,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Format::Summary)]
    pub format: Format,
    /// With `--format resp`: recreate every key with `RESTORE` of its raw
    /// payload (exact, including idle/freq; needs a target of the same or a newer version).
    #[arg(long)]
    pub restore: bool,
    /// With `--format resp`: delete each key before rebuilding it (`DEL`, `RESTORE … REPLACE`).
    #[arg(long)]
    pub replace: bool,
    /// With `--format resp`: pass stream counters (`ENTRIESADDED`,
    /// `MAXDELETEDID`, `ENTRIESREAD`) even for an RDB 9 dump, for a Redis
    /// 7.0+ target (by default only dumps of RDB 10+ get them).
    #[arg(long)]
    pub stream_counters: bool,
    /// With `--format resp` on a file: skip the checksum pass that runs
    /// before anything is written (then a damaged file is only noticed
    /// after its commands were written).
    #[arg(long)]
    pub no_precheck: bool,
    /// With `--format summary`: how many of the biggest keys to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Values whose encoding is bigger than this many bytes are decoded in chunks.
    #[arg(long, default_value_t = 8 << 20)]
    pub big_value_bytes: usize,
}

/// Run `ferry rdb`.
pub fn run(args: &RdbArgs) -> Result<()> {
    let name = args.file.display().to_string();
    let from_stdin = name == "-";
    let opts = ferry_rdb::DecodeOptions {
        big_value_bytes: args.big_value_bytes,
        ..Default::default()
    };
    if args.format == Format::Resp && !from_stdin && !args.no_precheck {
        precheck::verify(&args.file, opts.clone())
            .with_context(|| format!("cannot decode {name}"))?;
    }
    let input: Box<dyn Read> = if from_stdin {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("cannot open {name}"))?)
    };
    let mut reader = RdbReader::with_options(input, opts);
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, stdout);
    let mut sink: Box<dyn Sink> = match args.format {
        Format::Resp => Box::new(RespSink::new(args)),
        Format::Json => Box::new(JsonWriter::default()),
        Format::Summary => Box::new(summary::Summary::new(args.top)),
    };
    let mut empty = precheck::EmptyKeys::default();
    let mut result = (|| -> Result<()> {
        for item in reader.by_ref() {
            let item = item.with_context(|| format!("cannot decode {name}"))?;
            if let Item::EmptyKey(h) = &item {
                empty.add(h);
                continue;
            }
            sink.item(item, &mut out)?;
        }
        sink.finish(&mut out)?;
        Ok(())
    })();
    if let Err(e) = out.flush()
        && result.is_ok()
    {
        result = Err(e.into());
    }
    empty.warn();
    if reader.trailing_bytes() > 0 {
        eprintln!(
            "ferry: warning: {} byte(s) after the end of the RDB (after its checksum) ignored, \
             as a server loading the file ignores them",
            reader.trailing_bytes()
        );
    }
    match result {
        // Commands were streamed before the damage showed: say so on the same line.
        Err(e) if from_stdin && args.format == Format::Resp => Err(anyhow::anyhow!(
            "{e:#} — the commands already written to stdout are incomplete and must be \
             discarded (a server would refuse this dump)"
        )),
        r => r,
    }
}

/// Receives decoded items and writes one output format.
pub(crate) trait Sink {
    /// One item.
    fn item(&mut self, item: Item, out: &mut dyn Write) -> Result<()>;
    /// End of input.
    fn finish(&mut self, out: &mut dyn Write) -> Result<()>;
}

/// `--format resp`.
struct RespSink {
    builder: CommandBuilder,
    restore: bool,
    stream_counters: bool,
    version: u16,
    db: u64,
    big: Option<(KeyHeader, bool)>,
    buf: Vec<u8>,
    skipped: Vec<String>,
    /// Module values written, per module type name.
    modules: BTreeMap<String, u64>,
}

impl RespSink {
    fn new(args: &RdbArgs) -> Self {
        RespSink {
            builder: CommandBuilder::new(CommandOptions {
                replace: args.replace,
                ..Default::default()
            }),
            restore: args.restore,
            stream_counters: args.stream_counters,
            version: 0,
            db: 0,
            big: None,
            buf: Vec::with_capacity(1 << 16),
            skipped: Vec::new(),
            modules: BTreeMap::new(),
        }
    }

    fn select(&mut self, db: u64) {
        if db != self.db {
            self.db = db;
            ferry_resp::encode::write_command(
                &mut self.buf,
                &[&b"SELECT"[..], db.to_string().as_bytes()],
            );
        }
    }
}

impl Sink for RespSink {
    fn item(&mut self, item: Item, out: &mut dyn Write) -> Result<()> {
        match item {
            Item::Header { version, .. } => {
                self.version = version;
                self.builder.opts.payload_version = version;
                self.builder.opts.stream_v2_args = version >= 10 || self.stream_counters;
            }
            Item::Function { code } => {
                ferry_resp::encode::write_command(
                    &mut self.buf,
                    &[
                        Bytes::from("FUNCTION"),
                        "LOAD".into(),
                        "REPLACE".into(),
                        code,
                    ],
                );
            }
            Item::ModuleAux { module, .. } => self.skipped.push(format!(
                "module aux data of {} (carried only by a full RDB load)",
                module.name()
            )),
            Item::Key(k) => {
                self.select(k.header.db);
                if let Value::Module(m) = &k.value {
                    *self.modules.entry(m.id.name()).or_default() += 1;
                }
                let buf = &mut self.buf;
                let mut emit = |c: Vec<Bytes>| ferry_resp::encode::write_command(buf, &c);
                if self.restore {
                    let h = &k.header;
                    let mut c: Vec<Bytes> = vec![
                        "RESTORE".into(),
                        h.key.clone(),
                        h.expire_ms.map_or(0, |t| t).to_string().into(),
                        k.restore_payload(self.version),
                    ];
                    if h.expire_ms.is_some() {
                        c.push("ABSTTL".into());
                    }
                    if self.builder.opts.replace {
                        c.push("REPLACE".into());
                    }
                    if let Some(idle) = h.idle {
                        c.extend(["IDLETIME".into(), idle.to_string().into()]);
                    } else if let Some(f) = h.freq {
                        c.extend(["FREQ".into(), f.to_string().into()]);
                    }
                    emit(c);
                } else if let Err(u) = self.builder.whole(&k.header, &k.value, &k.raw, &mut emit) {
                    self.skipped.push(format!(
                        "key {:?}: {}",
                        String::from_utf8_lossy(&u.key),
                        u.reason
                    ));
                }
            }
            Item::BigKeyStart(h) => {
                self.select(h.db);
                self.big = Some((h, true));
            }
            Item::BigKeyChunk(v) => {
                let buf = &mut self.buf;
                let mut emit = |c: Vec<Bytes>| ferry_resp::encode::write_command(buf, &c);
                if let Some((h, first)) = &mut self.big {
                    if let Err(u) = self.builder.chunk(h, &v, *first, &mut emit) {
                        self.skipped.push(format!(
                            "key {:?}: {}",
                            String::from_utf8_lossy(&u.key),
                            u.reason
                        ));
                    }
                    *first = false;
                }
            }
            Item::BigKeyEnd => {
                if let Some((h, _)) = self.big.take() {
                    let buf = &mut self.buf;
                    let mut emit = |c: Vec<Bytes>| ferry_resp::encode::write_command(buf, &c);
                    self.builder.finish_key(&h, &mut emit);
                }
            }
            _ => {}
        }
        if self.buf.len() >= 1 << 16 {
            out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        out.write_all(&self.buf)?;
        self.buf.clear();
        for s in &self.skipped {
            eprintln!("ferry: warning: not carried: {s}");
        }
        if !self.skipped.is_empty() {
            eprintln!("ferry: warning: {} item(s) not carried", self.skipped.len());
        }
        for (t, n) in &self.modules {
            let module = crate::modules::module_of_type(t).unwrap_or("unknown");
            eprintln!(
                "ferry: note: {n} module value(s) of type {t} (module {module}) are written with \
                 RESTORE: a target without that module refuses them (ERR Bad data format)"
            );
        }
        Ok(())
    }
}

/// Size of a value's elements in bytes (for chunk accounting).
pub(crate) fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::List(l) | Value::Set(l) => l.iter().map(Bytes::len).sum(),
        Value::SortedSet(z) => z.iter().map(|(m, _)| m.len() + 8).sum(),
        Value::Hash(h) => h.iter().map(|f| f.field.len() + f.value.len()).sum(),
        Value::Stream(s) => s
            .entries
            .iter()
            .map(|e| {
                16 + e
                    .fields
                    .iter()
                    .map(|(f, v)| f.len() + v.len())
                    .sum::<usize>()
            })
            .sum(),
        Value::Module(_) => 0,
    }
}

/// Count of items per key, per db (used by the summary).
pub(crate) type PerDb = BTreeMap<u64, u64>;
