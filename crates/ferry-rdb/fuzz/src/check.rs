//! The checks run on every input. Each returns `Err(message)` on a violated
//! invariant; a panic inside ferry-rdb is caught by the caller.
//!
//! ```text
//! whole    decode_all(input): Header first, one End last, no big keys, every
//!          key's raw bytes and offset inside the input, value kind = header kind
//! chunked  Decoder fed in random-size pieces, random big_value_bytes (1..64 KiB,
//!          or the 8 MiB default a third of the time):
//!            offset() + buffered == bytes fed, after every call
//!            errors are sticky (decode and finish repeat them)
//!            once done: decode returns Ok(None) and consumes nothing
//!            big keys well formed: Start, >= 1 Chunk of the header's kind, End;
//!            never for strings or modules
//! agree    whole Ok <=> chunked Ok; both Err: the same error;
//!          default big_value_bytes: the same items, raw bytes included;
//!          otherwise the big keys merged back equal the whole keys
//! commands CommandBuilder (default options and small random ones) on every key,
//!          whole or chunked, of both decodes: no panic, >= 2 args, the key at
//!          its place, batches within max_elements
//! memory   each phase's peak allocation <= input length * 200 + 64 MiB
//! ```

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::{Bytes, BytesMut};
use ferry_rdb::commands::{Command, CommandBuilder, CommandOptions};
use ferry_rdb::{DecodeOptions, Decoder, Item, Key, KeyHeader, Kind, RdbError, Value, decode_all};

use crate::alloc;
use crate::mutate::Rng;

const MIB: usize = 1 << 20;

/// Most bytes one input may have allocated at once, per phase.
pub fn memory_bound(len: usize) -> usize {
    len.saturating_mul(200).saturating_add(64 * MIB)
}

/// How one input is checked, all derived from a seed (printed on failure).
#[derive(Debug)]
pub struct Plan {
    /// The check seed this plan came from.
    pub seed: u64,
    /// `big_value_bytes` of the chunked decode.
    pub big_value_bytes: usize,
    /// Largest piece fed to the chunked decoder.
    pub max_piece: usize,
    /// Seed of the piece sizes.
    pub feed_seed: u64,
    /// The second set of command options (the first is the default).
    pub small: CommandOptions,
}

impl Plan {
    pub fn new(seed: u64, len: usize) -> Plan {
        let mut rng = Rng(seed);
        let big_value_bytes = if rng.chance(3) {
            DecodeOptions::default().big_value_bytes
        } else {
            rng.log_size(64 << 10)
        };
        let max_piece = rng.log_size(len.max(1));
        let small = CommandOptions {
            max_elements: rng.below(9),
            max_bytes: rng.log_size(256),
            replace: rng.chance(2),
            payload_version: rng.below(16) as u16,
            stream_v2_args: rng.chance(2),
        };
        Plan {
            seed,
            big_value_bytes,
            max_piece,
            feed_seed: rng.next(),
            small,
        }
    }

    fn default_big(&self) -> bool {
        self.big_value_bytes == DecodeOptions::default().big_value_bytes
    }
}

/// The largest phase peak seen (bytes) and the length of its input.
pub static MAX_PEAK: AtomicUsize = AtomicUsize::new(0);
pub static MAX_PEAK_LEN: AtomicUsize = AtomicUsize::new(0);
/// The largest phase peak beyond its first MiB (the reader's buffers) per
/// input byte, for inputs of at least 4 KiB.
pub static MAX_RATIO: AtomicUsize = AtomicUsize::new(0);

/// Run `f`, failing if its peak allocation passes the bound for `len` bytes.
fn measured<T>(what: &str, len: usize, f: impl FnOnce() -> T) -> Result<T, String> {
    let bound = memory_bound(len);
    let base = alloc::reset_peak();
    let out = f();
    let used = alloc::peak().saturating_sub(base);
    if used > MAX_PEAK.load(Relaxed) {
        MAX_PEAK.store(used, Relaxed);
        MAX_PEAK_LEN.store(len, Relaxed);
    }
    if len >= 4096 {
        MAX_RATIO.fetch_max(used.saturating_sub(MIB) / len, Relaxed);
    }
    if used > bound {
        return Err(format!(
            "{what}: peak allocation {used} bytes, more than the bound {bound}"
        ));
    }
    Ok(out)
}

/// All checks on one input; `Ok` carries a coarse outcome signature.
pub fn check(input: &[u8], plan: &Plan) -> Result<String, String> {
    alloc::set_cap(memory_bound(input.len()));
    let r = check_inner(input, plan);
    alloc::set_cap(usize::MAX);
    r
}

fn check_inner(input: &[u8], plan: &Plan) -> Result<String, String> {
    let len = input.len();
    let whole = measured("decode_all", len, || decode_all(input))?;
    let whole: Result<Vec<Item>, RdbError> = match whole {
        Ok(items) => Ok(items),
        Err(ferry_rdb::ReadError::Rdb(e)) => Err(e),
        Err(e) => {
            return Err(format!(
                "decode_all of a slice failed with an IO error: {e}"
            ));
        }
    };
    if let Ok(items) = &whole {
        whole_sanity(input, items)?;
    }

    let opts = DecodeOptions {
        big_value_bytes: plan.big_value_bytes,
        ..Default::default()
    };
    let (citems, cres) = measured("chunked decode", len, || chunked(input, opts, plan))??;

    match (&whole, &cres) {
        (Ok(_), Err(e)) => {
            return Err(format!("decode_all succeeded, chunked decode failed: {e}"));
        }
        (Err(e), Ok(())) => {
            return Err(format!("chunked decode succeeded, decode_all failed: {e}"));
        }
        (Err(a), Err(b)) => {
            let both_magic =
                matches!(a, RdbError::BadMagic { .. }) && matches!(b, RdbError::BadMagic { .. });
            if a != b && !both_magic {
                return Err(format!(
                    "errors differ: decode_all: {a}; chunked decode: {b}"
                ));
            }
        }
        (Ok(w), Ok(())) => {
            if plan.default_big() {
                same_items(w, &citems, true).map_err(|d| format!("chunked items differ: {d}"))?;
            } else {
                let merged = merge(&citems)?;
                same_items(w, &merged, false)
                    .map_err(|d| format!("merged big keys differ from whole keys: {d}"))?;
            }
        }
    }

    let builders = [
        CommandBuilder::default(),
        CommandBuilder::new(plan.small.clone()),
    ];
    measured("commands", len, || {
        if let Ok(items) = &whole {
            run_commands(items, &builders)?;
        }
        run_commands(&citems, &builders)
    })??;

    Ok(signature(&whole, &citems))
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::String(_) => Kind::String,
        Value::List(_) => Kind::List,
        Value::Set(_) => Kind::Set,
        Value::SortedSet(_) => Kind::SortedSet,
        Value::Hash(_) => Kind::Hash,
        Value::Stream(_) => Kind::Stream,
        Value::Module(_) => Kind::Module,
    }
}

fn whole_sanity(input: &[u8], items: &[Item]) -> Result<(), String> {
    if !matches!(items.first(), Some(Item::Header { .. })) {
        return Err("decode_all succeeded but the first item is not Header".into());
    }
    if !matches!(items.last(), Some(Item::End { .. })) {
        return Err("decode_all succeeded but the last item is not End".into());
    }
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Header { .. } if i != 0 => return Err(format!("Header at item {i}")),
            Item::End { .. } if i + 1 != items.len() => return Err(format!("End at item {i}")),
            Item::BigKeyStart(_) | Item::BigKeyChunk(_) | Item::BigKeyEnd => {
                return Err(format!(
                    "big key item at {i} from a {}-byte input with the 8 MiB default",
                    input.len()
                ));
            }
            Item::Key(k) => {
                if k.raw.len() > input.len() || k.header.offset >= input.len() as u64 {
                    return Err(format!(
                        "key {:?}: raw of {} bytes / offset {} in a {}-byte input",
                        k.header.key,
                        k.raw.len(),
                        k.header.offset,
                        input.len()
                    ));
                }
                if kind_of(&k.value) != k.header.kind {
                    return Err(format!(
                        "key {:?}: header kind {:?}, value kind {:?}",
                        k.header.key,
                        k.header.kind,
                        kind_of(&k.value)
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Decode `input` fed in random pieces; the outer `Err` is a violated invariant.
fn chunked(
    input: &[u8],
    opts: DecodeOptions,
    plan: &Plan,
) -> Result<(Vec<Item>, Result<(), RdbError>), String> {
    let mut rng = Rng(plan.feed_seed);
    let mut d = Decoder::new(opts);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut fed = 0usize;
    let accounted = |d: &Decoder, buf: &BytesMut, fed: usize| {
        if d.offset() + buf.len() as u64 != fed as u64 {
            return Err(format!(
                "offset {} + {} buffered bytes != {fed} bytes fed",
                d.offset(),
                buf.len()
            ));
        }
        Ok(())
    };
    loop {
        loop {
            match d.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    match d.decode(&mut buf) {
                        Err(again) if again == e => {}
                        other => {
                            return Err(format!(
                                "decode after the error {e} returned {}",
                                brief(&other)
                            ));
                        }
                    }
                    if d.finish(&buf).as_ref().err() != Some(&e) {
                        return Err(format!("finish after the error {e} did not repeat it"));
                    }
                    return Ok((items, Err(e)));
                }
            }
            accounted(&d, &buf, fed)?;
        }
        accounted(&d, &buf, fed)?;
        if d.is_done() {
            let before = buf.len();
            let again = d.decode(&mut buf);
            if !matches!(again, Ok(None)) || buf.len() != before {
                return Err(format!(
                    "decode after the end returned {} and consumed {} bytes",
                    brief(&again),
                    before - buf.len()
                ));
            }
            if let Err(e) = d.finish(&buf) {
                return Err(format!("finish after the end failed: {e}"));
            }
            // Bytes after the checksum are ignored, as `decode_all` (and a
            // server loading the file) ignores them.
            return Ok((items, Ok(())));
        }
        if fed == input.len() {
            let r = d.finish(&buf);
            if r.is_ok() {
                return Err("finish succeeded although the decoder is not done".into());
            }
            return Ok((items, r));
        }
        let n = rng.log_size(plan.max_piece).min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
}

fn brief<T: std::fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// Equal, counting NaN scores as equal to each other.
fn value_eq(a: &Value, b: &Value) -> bool {
    a == b
        || match (a, b) {
            (Value::SortedSet(x), Value::SortedSet(y)) => {
                x.len() == y.len()
                    && x.iter().zip(y).all(|((m1, s1), (m2, s2))| {
                        m1 == m2 && (s1 == s2 || (s1.is_nan() && s2.is_nan()))
                    })
            }
            _ => false,
        }
}

fn item_eq(a: &Item, b: &Item, with_raw: bool) -> bool {
    match (a, b) {
        (Item::Key(x), Item::Key(y)) => {
            x.header == y.header && value_eq(&x.value, &y.value) && (!with_raw || x.raw == y.raw)
        }
        (Item::BigKeyChunk(x), Item::BigKeyChunk(y)) => value_eq(x, y),
        _ => a == b,
    }
}

fn same_items(a: &[Item], b: &[Item], with_raw: bool) -> Result<(), String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if !item_eq(x, y, with_raw) {
            return Err(format!("item {i}: {} vs {}", brief(x), brief(y)));
        }
    }
    if a.len() != b.len() {
        return Err(format!("{} items vs {}", a.len(), b.len()));
    }
    Ok(())
}

fn append(mut acc: Value, more: Value) -> Result<Value, String> {
    match acc.append(more) {
        Ok(()) => Ok(acc),
        Err(b) => Err(format!(
            "chunk {:?} cannot follow {:?} (other kind, or after the stream metadata)",
            kind_of(&b),
            kind_of(&acc)
        )),
    }
}

/// Big keys merged into whole keys (raw left empty), for comparison with
/// `decode_all`; the structure was checked by `run_commands`.
fn merge(items: &[Item]) -> Result<Vec<Item>, String> {
    let mut out = Vec::with_capacity(items.len());
    let mut cur: Option<(KeyHeader, Option<Value>)> = None;
    for item in items {
        match item {
            Item::BigKeyStart(h) => cur = Some((h.clone(), None)),
            Item::BigKeyChunk(v) => {
                let (_, acc) = cur.as_mut().ok_or("chunk outside a big key")?;
                *acc = Some(match acc.take() {
                    None => v.clone(),
                    Some(a) => append(a, v.clone())?,
                });
            }
            Item::BigKeyEnd => {
                let (header, value) = cur.take().ok_or("end outside a big key")?;
                out.push(Item::Key(Key {
                    header,
                    value: value.ok_or("big key without chunks")?,
                    raw: Bytes::new(),
                }));
            }
            other => out.push(other.clone()),
        }
    }
    Ok(out)
}

/// Counts commands and checks each one.
struct Sink {
    commands: usize,
    bad: Option<String>,
}

impl Sink {
    fn take(&mut self, key: &[u8], opts: &CommandOptions, c: Command) {
        self.commands += 1;
        if self.bad.is_some() {
            return;
        }
        let name = c.first().map(|n| String::from_utf8_lossy(n).into_owned());
        let name = name.unwrap_or_default();
        if c.len() < 2 {
            self.bad = Some(format!("command {name:?} with {} arguments", c.len()));
            return;
        }
        let key_at = if name == "XGROUP" { 2 } else { 1 };
        if c.get(key_at).map(|k| &k[..]) != Some(key) {
            self.bad = Some(format!(
                "{name} does not carry the key at argument {key_at}"
            ));
            return;
        }
        let per = match name.as_str() {
            "RPUSH" | "SADD" => 1,
            "ZADD" | "HSET" => 2,
            _ => return,
        };
        let args = c.len() - 2;
        if args == 0 || !args.is_multiple_of(per) || args / per > opts.max_elements.max(1) {
            self.bad = Some(format!(
                "{name} with {args} element arguments (max_elements {})",
                opts.max_elements
            ));
        }
    }
}

/// Commands for every key of `items`; also checks the big-key structure.
fn run_commands(items: &[Item], builders: &[CommandBuilder]) -> Result<usize, String> {
    let mut sink = Sink {
        commands: 0,
        bad: None,
    };
    // The current big key and whether its first chunk is still to come.
    let mut big: Option<(&KeyHeader, bool)> = None;
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Key(k) => {
                if big.is_some() {
                    return Err(format!("whole key at item {i} inside a big key"));
                }
                if kind_of(&k.value) != k.header.kind {
                    return Err(format!(
                        "key {:?}: header kind {:?}, value kind {:?}",
                        k.header.key,
                        k.header.kind,
                        kind_of(&k.value)
                    ));
                }
                for b in builders {
                    let key = &k.header.key;
                    let _ = b.whole(&k.header, &k.value, &k.raw, &mut |c| {
                        sink.take(key, &b.opts, c)
                    });
                }
            }
            Item::BigKeyStart(h) => {
                if big.is_some() {
                    return Err(format!("BigKeyStart at item {i} inside a big key"));
                }
                if matches!(h.kind, Kind::String | Kind::Module) {
                    return Err(format!("big key of kind {:?} at item {i}", h.kind));
                }
                big = Some((h, true));
            }
            Item::BigKeyChunk(v) => {
                let Some((h, first)) = big.as_mut() else {
                    return Err(format!("BigKeyChunk at item {i} outside a big key"));
                };
                if kind_of(v) != h.kind {
                    return Err(format!(
                        "big key {:?} of kind {:?} has a chunk of kind {:?}",
                        h.key,
                        h.kind,
                        kind_of(v)
                    ));
                }
                for b in builders {
                    let _ = b.chunk(h, v, *first, &mut |c| sink.take(&h.key, &b.opts, c));
                }
                *first = false;
            }
            Item::BigKeyEnd => {
                let Some((h, first)) = big.take() else {
                    return Err(format!("BigKeyEnd at item {i} outside a big key"));
                };
                if first {
                    return Err(format!("big key {:?} without chunks", h.key));
                }
                for b in builders {
                    b.finish_key(h, &mut |c| sink.take(&h.key, &b.opts, c));
                }
            }
            other => {
                if big.is_some() {
                    return Err(format!("{} at item {i} inside a big key", brief(other)));
                }
            }
        }
    }
    match sink.bad {
        Some(bad) => Err(bad),
        None => Ok(sink.commands),
    }
}

fn strip_digits(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_digit()).take(60).collect()
}

fn error_signature(e: &RdbError) -> String {
    match e {
        RdbError::Corrupt { what, .. } => format!("corrupt:{}", strip_digits(what)),
        RdbError::Container {
            rdb_type_name,
            source,
            ..
        } => format!(
            "container:{rdb_type_name}:{}:{}",
            source.container,
            strip_digits(&source.what)
        ),
        RdbError::UnknownType { byte, .. } => {
            format!("unknown:{}", if *byte >= 0xF0 { "opcode" } else { "type" })
        }
        RdbError::TooLarge { what, .. } => format!("too-large:{what}"),
        RdbError::Lzf { source, .. } => format!("lzf:{}", strip_digits(&source.to_string())),
        RdbError::Truncated { context, .. } => {
            let words: Vec<&str> = context.split(' ').take(3).collect();
            format!("truncated:{}", words.join(" "))
        }
        other => brief(other)
            .split([' ', '{', '('])
            .next()
            .unwrap_or("")
            .to_owned(),
    }
}

/// A coarse description of what happened, used to grow the corpus.
fn signature(whole: &Result<Vec<Item>, RdbError>, citems: &[Item]) -> String {
    let head = match whole {
        Ok(items) => {
            let mut types = 0u64;
            let mut keys = 0usize;
            for item in items {
                if let Item::Key(k) = item {
                    types |= 1 << (k.header.rdb_type % 64);
                    keys += 1;
                }
            }
            format!("ok:{}:{types:x}", usize::BITS - keys.leading_zeros())
        }
        Err(e) => error_signature(e),
    };
    // The last key type reached by the chunked decode, and whether it chunked.
    let mut last = None;
    let mut big = false;
    for item in citems {
        match item {
            Item::Key(k) => last = Some(k.header.rdb_type),
            Item::BigKeyStart(h) => {
                last = Some(h.rdb_type);
                big = true;
            }
            _ => {}
        }
    }
    format!("{head}|{last:?}|{big}")
}
