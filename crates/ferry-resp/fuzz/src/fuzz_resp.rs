//! `fuzz_resp`: a self-contained mutation fuzzer for `ferry-resp` that runs
//! on stable Rust (no libFuzzer, no nightly).
//!
//! Loop: pick a corpus entry (seed files, plus encodings of random values),
//! apply 1–4 mutations, and run every entry point on the result inside
//! `catch_unwind`. Invariants, each a panic when broken:
//!
//! ```text
//! decode / decode_bytes   never panic; consumed <= len; both agree;
//!                         a decoded value re-encodes and decodes to itself
//! prefix consistency      decode(input[..k]) is Ok(None) or equals decode(input)
//! chunked == whole        frames (and the final error) are identical whether the
//!                         input is fed whole or in random-size pieces
//! decode_command          agrees with decode on arrays of bulk strings
//!                         (without RESP3 attributes);
//!                         wire_len == command_len(args); split_command and
//!                         split_args in pieces yield the same commands
//! decode_replies_up_to    gives decode_all's values (a `Plain(n)` for an array
//!                         of n `+OK` / integer items)
//! ```
//!
//! The same checks also run with small random limits (max_bulk_len,
//! max_array_len, max_depth). A crash writes the input to `artifacts/` and
//! exits with status 1. Inputs that produce a new outcome (value shape or
//! error kind) join the corpus, a crude stand-in for coverage feedback.

#![forbid(unsafe_code)]

mod mutate;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use ferry_resp::{Decoder, Reply, RespError, Value, command_len, write_value};

use mutate::{Rng, gen_value, mutate_once};

const USAGE: &str = "\
usage: fuzz_resp [--seconds N | --iterations N] [--seed N] [--max-len N]
                 [--seeds DIR] [--artifacts DIR] [--replay FILE...]

  --seconds N     run for N seconds (default 10)
  --iterations N  run exactly N inputs instead (fully deterministic with --seed)
  --seed N        PRNG seed (default: from the clock; printed at start)
  --max-len N     largest mutated input in bytes (default 4096)
  --seeds DIR     seed corpus (default: <crate>/fuzz/seeds)
  --artifacts DIR where crashing inputs go (default: <crate>/fuzz/artifacts)
  --replay FILE.. run the checks on these files only (e.g. a saved artifact)";

/// Command-line options.
struct Opts {
    seconds: u64,
    iterations: Option<u64>,
    seed: u64,
    max_len: usize,
    seeds: PathBuf,
    artifacts: PathBuf,
    replay: Vec<PathBuf>,
}

fn parse_args() -> Result<Opts, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        seconds: 10,
        iterations: None,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        max_len: 4096,
        seeds: here.join("seeds"),
        artifacts: here.join("artifacts"),
        replay: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--seconds" => o.seconds = num(val()?)?,
            "--iterations" => o.iterations = Some(num(val()?)?),
            "--seed" => o.seed = num(val()?)?,
            "--max-len" => o.max_len = num(val()?)?.max(1) as usize,
            "--seeds" => o.seeds = val()?.into(),
            "--artifacts" => o.artifacts = val()?.into(),
            "--replay" => o.replay.extend(args.by_ref().map(PathBuf::from)),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, v);
    out
}

/// Equality through `Debug`, so that `NaN` equals itself.
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// How a stream of frames ended.
#[derive(Debug, PartialEq)]
enum End {
    /// These many bytes were left over, not yet a whole frame.
    Incomplete(usize),
    Error(RespError),
}

/// Frames (as `Debug` text and length) decoded from the whole input, and how it ended.
fn frames_whole(dec: &Decoder, input: &[u8]) -> (Vec<(String, usize)>, End) {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        match dec.decode(&input[pos..]) {
            Ok(Some((v, n))) => {
                assert!(
                    n > 0 && n <= input.len() - pos,
                    "consumed {n} of {}",
                    input.len() - pos
                );
                frames.push((format!("{v:?}"), n));
                pos += n;
            }
            Ok(None) => return (frames, End::Incomplete(input.len() - pos)),
            Err(e) => {
                assert!(
                    e.offset() < input.len() - pos,
                    "error offset {} past the end: {e}",
                    e.offset()
                );
                return (frames, End::Error(e));
            }
        }
    }
}

/// The same, feeding the input in random-size pieces into a growing buffer.
fn frames_chunked(dec: &Decoder, input: &[u8], rng: &mut Rng) -> (Vec<(String, usize)>, End) {
    let max_piece = 1 + rng.below(input.len().max(1));
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    loop {
        loop {
            match dec.decode(&buf) {
                Ok(Some((v, n))) => {
                    frames.push((format!("{v:?}"), n));
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (frames, End::Error(e)),
            }
        }
        if fed == input.len() {
            return (frames, End::Incomplete(buf.len()));
        }
        let n = (1 + rng.below(max_piece)).min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
}

/// Commands decoded from the whole input with `decode_command`, and how it ended.
fn commands_whole(dec: &Decoder, input: &Bytes) -> (Vec<(Vec<Bytes>, usize)>, End) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match dec.decode_command(&input.slice(pos..)) {
            Ok(Some(c)) => {
                assert!(c.wire_len > 0 && c.wire_len <= input.len() - pos);
                assert_eq!(
                    c.wire_len,
                    command_len(&c.args),
                    "non-canonical command accepted"
                );
                pos += c.wire_len;
                out.push((c.args, c.wire_len));
            }
            Ok(None) => return (out, End::Incomplete(input.len() - pos)),
            Err(e) => return (out, End::Error(e)),
        }
    }
}

/// The same with `split_command` and `split_args` (alternately) on a
/// `BytesMut` fed in random-size pieces.
fn commands_chunked(dec: &Decoder, input: &[u8], rng: &mut Rng) -> (Vec<(Vec<Bytes>, usize)>, End) {
    let max_piece = 1 + rng.below(input.len().max(1));
    let mut rx = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        loop {
            let before = rx.len();
            let step = if out.len() % 2 == 1 {
                dec.split_args(&mut rx).map(|c| {
                    c.map(|c| {
                        assert_eq!(c.args.spilled(), c.args.len() > 3);
                        ferry_resp::Command {
                            args: c.args.into_vec(),
                            wire_len: c.wire_len,
                        }
                    })
                })
            } else {
                dec.split_command(&mut rx)
            };
            match step {
                Ok(Some(c)) => {
                    assert_eq!(rx.len(), before - c.wire_len);
                    out.push((c.args, c.wire_len));
                }
                Ok(None) => {
                    assert_eq!(rx.len(), before);
                    break;
                }
                Err(e) => return (out, End::Error(e)),
            }
        }
        if fed == input.len() {
            return (out, End::Incomplete(rx.len()));
        }
        let n = (1 + rng.below(max_piece)).min(input.len() - fed);
        rx.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
}

/// Runs every check on `input`; panics on a violated invariant. Returns a
/// short description of the outcome, used to grow the corpus.
fn check(input: &[u8], dec: &Decoder, rng: &mut Rng) -> String {
    let shared = Bytes::copy_from_slice(input);
    let whole = dec.decode(input);
    assert!(
        same(&whole, &dec.decode_bytes(&shared)),
        "decode and decode_bytes disagree"
    );
    if let Ok(Some((v, n))) = &whole {
        assert!(*n <= input.len());
        let again = encode(v);
        let back = dec.decode(&again);
        // Re-encoding can only fail on limits: e.g. `_` (3 bytes) re-encodes as `$-1` (5).
        if !matches!(
            back,
            Err(RespError::LineTooLong { .. } | RespError::BulkTooLong { .. })
        ) {
            assert!(
                same(&back, &Ok(Some((v.clone(), again.len())))),
                "re-encoding changed {v:?}: {back:?}"
            );
        }
    }
    for _ in 0..4 {
        let k = rng.below(input.len() + 1);
        let part = dec.decode(&input[..k]);
        assert!(
            matches!(part, Ok(None)) || same(&part, &whole),
            "prefix of {k} bytes gave {part:?}, whole input gave {whole:?}"
        );
    }
    let (frames, end) = frames_whole(dec, input);
    let (cframes, cend) = frames_chunked(dec, input, rng);
    assert!(
        frames == cframes && end == cend,
        "chunked decode differs: {cframes:?} {cend:?} vs {frames:?} {end:?}"
    );

    // Replies decoded many at once: the compact forms are the values.
    let (mut vals, mut reps) = (Vec::new(), Vec::new());
    let all = ferry_resp::decode_all(input, &mut vals);
    let compact = ferry_resp::decode_replies_up_to(input, &mut reps, usize::MAX);
    assert!(
        all.as_ref().ok() == compact.as_ref().ok() && all.is_err() == compact.is_err(),
        "decode_all gave {all:?}, decode_replies_up_to {compact:?}"
    );
    assert_eq!(
        vals.len(),
        reps.len(),
        "decode_all and decode_replies_up_to counts"
    );
    for (v, r) in vals.iter().zip(reps) {
        match r {
            Reply::Plain(n) => assert!(
                matches!(v, Value::Array(items) if items.len() == n as usize
                    && items.iter().all(|i| matches!(i, Value::Integer(_))
                        || *i == Value::simple("OK"))),
                "Plain({n}) for {v:?}"
            ),
            r => assert_eq!(
                format!("{:?}", r.into_value()),
                format!("{:?}", Some(v)),
                "reply and value differ"
            ),
        }
    }

    let cmd = dec.decode_command(&shared);
    match &cmd {
        Ok(Some(c)) => assert!(
            same(&whole, &Ok(Some((c.to_value(), c.wire_len)))),
            "decode_command gave {c:?}, decode gave {whole:?}"
        ),
        Ok(None) => assert!(
            matches!(whole, Ok(None)),
            "decode_command incomplete, decode gave {whole:?}"
        ),
        Err(_) => {}
    }
    // An array of bulks whose canonical encoding is exactly what was consumed
    // (i.e. no RESP3 attribute was skipped on the way) must be a command.
    if let Ok(Some((Value::Array(items), n))) = &whole {
        let args: Option<Vec<&Bytes>> = items
            .iter()
            .map(|v| match v {
                Value::Bulk(b) => Some(b),
                _ => None,
            })
            .collect();
        if args.is_some_and(|a| command_len(&a) == *n) {
            let c = cmd.as_ref().ok().and_then(Option::as_ref);
            assert!(
                c.is_some_and(
                    |c| c.wire_len == *n && same(&c.to_value(), &Value::Array(items.clone()))
                ),
                "decode gave an array of bulks, decode_command gave {cmd:?}"
            );
        }
    }
    let (cmds, cmd_end) = commands_whole(dec, &shared);
    let (ccmds, ccmd_end) = commands_chunked(dec, input, rng);
    assert!(
        cmds == ccmds && cmd_end == ccmd_end,
        "split_command / split_args in pieces differ from decode_command"
    );

    outcome(&whole, frames.len(), &cmd_end)
}

/// A coarse signature of what happened: value shape / error kind.
fn outcome(
    whole: &Result<Option<(Value, usize)>, RespError>,
    frames: usize,
    cmd_end: &End,
) -> String {
    let head = match whole {
        Ok(Some((v, _))) => shape(v, 1),
        Ok(None) => "incomplete".to_owned(),
        Err(e) => error_kind(e),
    };
    let cmd = match cmd_end {
        End::Incomplete(_) => "cmd-incomplete".to_owned(),
        End::Error(e) => error_kind(e),
    };
    format!("{head}|frames={}|{cmd}", frames.min(4))
}

fn error_kind(e: &RespError) -> String {
    match e {
        RespError::UnexpectedByte { expected, .. } => format!("unexpected({expected})"),
        RespError::NotCommand { expected, .. } => format!("not-command({expected})"),
        other => format!("{other:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_owned(),
    }
}

fn shape(v: &Value, depth: usize) -> String {
    let inner = |items: &mut dyn Iterator<Item = &Value>| {
        if depth == 0 {
            return String::new();
        }
        items
            .take(2)
            .map(|v| shape(v, depth - 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    match v {
        Value::Array(a) => format!("A[{}]", inner(&mut a.iter())),
        Value::Set(a) => format!("S[{}]", inner(&mut a.iter())),
        Value::Push(a) => format!("P[{}]", inner(&mut a.iter())),
        Value::Map(m) => format!("M[{}]", inner(&mut m.iter().flat_map(|(k, v)| [k, v]))),
        other => format!("{other:?}")
            .chars()
            .take_while(|c| c.is_alphabetic())
            .collect(),
    }
}

/// A decoder with small random limits, to reach the limit errors often.
fn small_decoder(rng: &mut Rng) -> Decoder {
    Decoder {
        max_bulk_len: rng.below(64),
        max_array_len: rng.below(8),
        max_depth: rng.below(6),
    }
}

/// Runs `check` on `input` with the default and a small-limit decoder,
/// catching panics. Returns the outcome or the panic message.
fn run_one(input: &[u8], rng: &mut Rng) -> Result<String, String> {
    let mut local = Rng(rng.next());
    let small = small_decoder(rng);
    panic::catch_unwind(AssertUnwindSafe(|| {
        let a = check(input, &Decoder::new(), &mut local);
        let b = check(input, &small, &mut local);
        // For the small-limit decoder only the kind of outcome matters.
        let b = b.split(['|', '[']).next().unwrap_or("");
        format!("{a}#{b}")
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "non-string panic".to_owned())
    })
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn save_artifact(dir: &Path, input: &[u8]) -> PathBuf {
    let path = dir.join(format!("crash-{:016x}", fnv1a(input)));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("could not write {}: {e}", path.display());
    }
    path
}

fn load_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    // Panics are expected to be caught; keep their report to one line.
    panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
    }));
    let mut rng = Rng(opts.seed);

    if !opts.replay.is_empty() {
        let mut failed = false;
        for path in &opts.replay {
            let input = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            match run_one(&input, &mut rng) {
                Ok(outcome) => println!("{}: ok ({outcome})", path.display()),
                Err(msg) => {
                    println!("{}: FAILED: {msg}", path.display());
                    failed = true;
                }
            }
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    let mut corpus = load_seeds(&opts.seeds);
    println!(
        "fuzz_resp: seed {} | {} seed files from {}",
        opts.seed,
        corpus.len(),
        opts.seeds.display()
    );
    for _ in 0..64 {
        corpus.push(encode(&gen_value(&mut rng, 4)));
    }
    let mut seen: HashSet<String> = HashSet::new();
    for input in corpus.clone() {
        match run_one(&input, &mut rng) {
            Ok(o) => {
                seen.insert(o);
            }
            Err(msg) => return crash(&opts, &input, &msg),
        }
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut last_report = start;
    let mut iterations: u64 = 0;
    loop {
        match opts.iterations {
            Some(n) if iterations >= n => break,
            None if iterations.is_multiple_of(64) && Instant::now() >= deadline => break,
            _ => {}
        }
        let mut input = rng.pick(&corpus).clone();
        for _ in 0..1 + rng.below(4) {
            mutate_once(&mut rng, &mut input, &corpus);
        }
        input.truncate(opts.max_len);
        match run_one(&input, &mut rng) {
            Ok(o) => {
                if seen.insert(o) && corpus.len() < 20_000 {
                    corpus.push(input);
                }
            }
            Err(msg) => return crash(&opts, &input, &msg),
        }
        iterations += 1;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            report(iterations, start, corpus.len(), seen.len());
        }
    }
    report(iterations, start, corpus.len(), seen.len());
    println!("fuzz_resp: no failures");
    ExitCode::SUCCESS
}

fn report(iterations: u64, start: Instant, corpus: usize, outcomes: usize) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  {iterations} inputs in {secs:.1}s ({:.0}/s), corpus {corpus}, distinct outcomes {outcomes}",
        iterations as f64 / secs.max(1e-9)
    );
}

fn crash(opts: &Opts, input: &[u8], msg: &str) -> ExitCode {
    let path = save_artifact(&opts.artifacts, input);
    eprintln!("fuzz_resp: invariant violated or panic: {msg}");
    eprintln!("  input ({} bytes): {}", input.len(), input.escape_ascii());
    eprintln!("  saved to {}", path.display());
    eprintln!(
        "  reproduce: cargo run --release --bin fuzz_resp -- --replay {}",
        path.display()
    );
    ExitCode::FAILURE
}
