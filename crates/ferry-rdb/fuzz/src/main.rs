//! `fuzz_rdb`: a self-contained mutation fuzzer for `ferry-rdb` that runs on
//! stable Rust (no libFuzzer, no nightly).
//!
//! Loop: pick a corpus input (the files in `seeds/`, plus small files built
//! in code, see `builtin.rs`), apply 1–8 mutations (`mutate.rs`), fix the
//! CRC64 trailer half the time, and run the checks of `check.rs` inside
//! `catch_unwind`, under a counting allocator (`alloc.rs`) and a watchdog
//! thread that catches hangs. A panic, a violated invariant, too much memory
//! or a timeout writes the input to `artifacts/<hash>.rdb`, prints the
//! message and exits with status 1. Inputs with a new outcome (error kind,
//! key types reached) join the corpus, a crude stand-in for coverage.

#![deny(unsafe_code)]

mod alloc;
mod builtin;
mod check;
mod mutate;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use ferry_rdb::{DecodeOptions, Decoder, Item};

use check::Plan;
use mutate::{Input, Rng};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const USAGE: &str = "\
usage: fuzz_rdb [--seconds N | --iterations N] [--seed N] [--corpus DIR]
                [--artifacts DIR] [--max-len N] [--timeout N]
       fuzz_rdb --replay FILE... [--check-seed N]

  --seconds N     run for N seconds (default 10)
  --iterations N  run exactly N inputs instead (fully deterministic with --seed)
  --seed N        PRNG seed (default: from the clock; printed at start)
  --corpus DIR    seed files (default: <crate>/fuzz/seeds)
  --artifacts DIR where failing inputs go (default: <crate>/fuzz/artifacts)
  --max-len N     largest mutated input in bytes (default 262144)
  --timeout N     seconds one input may take before it counts as a hang (default 20)
  --replay FILE.. run the checks on these files only (32 plans each, or the
                  one given by --check-seed, as printed with a failure)";

struct Opts {
    seconds: u64,
    iterations: Option<u64>,
    seed: u64,
    corpus: PathBuf,
    artifacts: PathBuf,
    max_len: usize,
    timeout: u64,
    replay: Vec<PathBuf>,
    check_seed: Option<u64>,
}

fn parse_args() -> Result<Opts, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        seconds: 10,
        iterations: None,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        corpus: here.join("seeds"),
        artifacts: here.join("artifacts"),
        max_len: 256 << 10,
        timeout: 20,
        replay: Vec::new(),
        check_seed: None,
    };
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--seconds" => o.seconds = num(val()?)?,
            "--iterations" => o.iterations = Some(num(val()?)?),
            "--seed" => o.seed = num(val()?)?,
            "--corpus" => o.corpus = val()?.into(),
            "--artifacts" => o.artifacts = val()?.into(),
            "--max-len" => o.max_len = num(val()?)?.max(1) as usize,
            "--timeout" => o.timeout = num(val()?)?.max(1),
            "--check-seed" => o.check_seed = Some(num(val()?)?),
            "--replay" => {
                while let Some(f) = args.next_if(|f| !f.starts_with("--")) {
                    o.replay.push(f.into());
                }
                if o.replay.is_empty() {
                    return Err("--replay needs at least one file".into());
                }
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// The message of the last panic (with its location and a backtrace).
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// The input being checked, for the watchdog and the allocation cap.
static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Where artifacts go (set once at start).
static ARTIFACTS: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Milliseconds since `EPOCH_START` when the current input started; 0 = idle.
static BUSY_SINCE: AtomicU64 = AtomicU64::new(0);
/// The check seed of the current input.
static CHECK_SEED: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn save_artifact(input: &[u8]) -> PathBuf {
    let dir = ARTIFACTS
        .lock()
        .ok()
        .and_then(|d| d.clone())
        .unwrap_or_else(|| PathBuf::from("artifacts"));
    let path = dir.join(format!("{:016x}.rdb", fnv1a(input)));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("could not write {}: {e}", path.display());
    }
    path
}

/// The frames of the current backtrace that are in ferry-rdb or the checks.
fn short_backtrace() -> String {
    let full = std::backtrace::Backtrace::force_capture().to_string();
    let mut out = String::new();
    let mut keep = false;
    for line in full.lines().take(400) {
        let t = line.trim_start();
        if !t.starts_with("at ") {
            keep = (t.contains("ferry_rdb::") || t.contains("fuzz_rdb::check"))
                && !t.contains("short_backtrace");
        }
        if keep {
            out.push_str(if t.starts_with("at ") {
                "          "
            } else {
                "    "
            });
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

/// Called by the allocator when one allocation passes the per-input cap:
/// save the input and exit before the OS is asked for it.
pub fn huge_allocation(size: usize, cap: usize) {
    let input = CURRENT.try_lock().map(|g| g.clone()).unwrap_or_default();
    let path = save_artifact(&input);
    eprintln!(
        "fuzz_rdb: FAILED: a single allocation of {size} bytes, over the cap of {cap} \
         for a {}-byte input\n  {}",
        input.len(),
        short_backtrace()
    );
    eprintln!(
        "  input saved to {} (check seed {})",
        path.display(),
        CHECK_SEED.load(Relaxed)
    );
    std::process::exit(1);
}

fn watchdog(timeout: Duration) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let since = BUSY_SINCE.load(Relaxed);
            if since != 0 && now_ms().saturating_sub(since) > timeout.as_millis() as u64 {
                let input = CURRENT.lock().map(|g| g.clone()).unwrap_or_default();
                let path = save_artifact(&input);
                eprintln!(
                    "fuzz_rdb: FAILED: one input ({} bytes) ran for more than {} s",
                    input.len(),
                    timeout.as_secs()
                );
                eprintln!(
                    "  input saved to {} (check seed {})",
                    path.display(),
                    CHECK_SEED.load(Relaxed)
                );
                std::process::exit(1);
            }
        }
    });
}

/// Runs the checks on `input` with the plan of `seed`, catching panics.
fn run_one(input: &[u8], seed: u64) -> Result<String, String> {
    let plan = Plan::new(seed, input.len());
    if let Ok(mut c) = CURRENT.lock() {
        c.clear();
        c.extend_from_slice(input);
    }
    if let Ok(mut p) = LAST_PANIC.lock() {
        *p = None;
    }
    CHECK_SEED.store(seed, Relaxed);
    BUSY_SINCE.store(now_ms(), Relaxed);
    let r = panic::catch_unwind(AssertUnwindSafe(|| check::check(input, &plan)));
    BUSY_SINCE.store(0, Relaxed);
    alloc::set_cap(usize::MAX);
    match r {
        Ok(Ok(sig)) => Ok(sig),
        Ok(Err(msg)) => Err(format!(
            "invariant violated: {msg}\n  check seed {} (--check-seed), plan: {plan:?}",
            plan.seed
        )),
        Err(_) => {
            let msg = LAST_PANIC
                .lock()
                .ok()
                .and_then(|p| p.clone())
                .unwrap_or_else(|| "panic without a message".into());
            Err(format!(
                "panic: {msg}\n  check seed {} (--check-seed), plan: {plan:?}",
                plan.seed
            ))
        }
    }
}

/// File offsets where the records of `data` start, from a plain decode.
fn bounds_of(data: &[u8]) -> Vec<usize> {
    panic::catch_unwind(|| {
        let mut d = Decoder::new(DecodeOptions::default());
        let mut buf = BytesMut::from(data);
        let mut out = Vec::new();
        let mut last = 0;
        while let Ok(Some(item)) = d.decode(&mut buf) {
            if let Item::Key(k) = &item {
                out.push(k.header.offset as usize);
            }
            if d.offset() != last {
                last = d.offset();
                out.push(last as usize);
            }
        }
        out.sort_unstable();
        out.dedup();
        out.retain(|&b| b < data.len());
        out
    })
    .unwrap_or_default()
}

fn load_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| Some((p.display().to_string(), std::fs::read(p).ok()?)))
        .collect()
}

/// Reports a failure of the current input and returns the exit status.
fn crash(input: &[u8], msg: &str) -> ExitCode {
    let path = save_artifact(input);
    eprintln!("fuzz_rdb: FAILED: {msg}");
    eprintln!(
        "  input: {} bytes, saved to {}",
        input.len(),
        path.display()
    );
    eprintln!(
        "  reproduce: cargo run --release --manifest-path crates/ferry-rdb/fuzz/Cargo.toml -- \
         --replay {} --check-seed {}",
        path.display(),
        CHECK_SEED.load(Relaxed)
    );
    ExitCode::FAILURE
}

fn replay(opts: &Opts) -> ExitCode {
    let mut failed = false;
    for path in &opts.replay {
        let input = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        let seeds: Vec<u64> = match opts.check_seed {
            Some(s) => vec![s],
            None => {
                let mut rng = Rng(opts.seed);
                (0..32).map(|_| rng.next()).collect()
            }
        };
        let mut outcome = String::new();
        let mut bad = None;
        for s in seeds {
            match run_one(&input, s) {
                Ok(o) => outcome = o,
                Err(msg) => {
                    bad = Some(msg);
                    break;
                }
            }
        }
        match bad {
            None => println!("{}: ok ({outcome})", path.display()),
            Some(msg) => {
                println!("{}: FAILED: {msg}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// At most this many corpus inputs, and this many bytes in all.
const MAX_CORPUS: usize = 4000;
const MAX_CORPUS_BYTES: usize = 256 << 20;

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    if let Ok(mut a) = ARTIFACTS.lock() {
        *a = Some(opts.artifacts.clone());
    }
    // Panics inside a check are caught: keep their message (with a backtrace)
    // for the report. Anywhere else (a bug of the fuzzer itself) say it now.
    panic::set_hook(Box::new(|info| {
        let msg = format!("{info}\n{}", short_backtrace());
        if BUSY_SINCE.load(Relaxed) == 0 {
            eprintln!("fuzz_rdb: internal error: {info}");
        }
        if let Ok(mut p) = LAST_PANIC.lock() {
            *p = Some(msg);
        }
    }));
    watchdog(Duration::from_secs(opts.timeout));

    if !opts.replay.is_empty() {
        return replay(&opts);
    }

    let mut rng = Rng(opts.seed);
    let files = load_corpus(&opts.corpus);
    println!(
        "fuzz_rdb: seed {} | {} seed files from {} + {} built in",
        opts.seed,
        files.len(),
        opts.corpus.display(),
        builtin::seeds().len()
    );
    let mut corpus: Vec<Input> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (name, data) in files.into_iter().chain(
        builtin::seeds()
            .into_iter()
            .map(|(n, d)| (n.to_string(), d)),
    ) {
        // Seeds must decode; check them with a few plans.
        for _ in 0..4 {
            match run_one(&data, rng.next()) {
                Ok(o) => {
                    if !o.starts_with("ok:") {
                        eprintln!("fuzz_rdb: note: seed {name} does not decode: {o}");
                    }
                    seen.insert(o);
                }
                Err(msg) => return crash(&data, &format!("seed {name}: {msg}")),
            }
        }
        corpus.push(Input {
            bounds: bounds_of(&data),
            data,
        });
    }
    let n_seeds = corpus.len();
    let mut corpus_bytes: usize = corpus.iter().map(|i| i.data.len()).sum();

    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut last_report = start;
    let mut iterations: u64 = 0;
    let mut slowest = (Duration::ZERO, 0usize);
    loop {
        match opts.iterations {
            Some(n) if iterations >= n => break,
            None if iterations.is_multiple_of(16) && Instant::now() >= deadline => break,
            _ => {}
        }
        // Half the time a seed: mutants of mutants mostly fail early.
        let pool = if rng.chance(2) { n_seeds } else { corpus.len() };
        let base = rng.below(pool);
        let input = mutate::mutant(&mut rng, &corpus[base], &corpus, opts.max_len);
        let t0 = Instant::now();
        let result = run_one(&input, rng.next());
        slowest = slowest.max((t0.elapsed(), input.len()));
        match result {
            Ok(o) => {
                if seen.insert(o)
                    && corpus.len() < MAX_CORPUS
                    && corpus_bytes + input.len() <= MAX_CORPUS_BYTES
                {
                    corpus_bytes += input.len();
                    corpus.push(Input {
                        bounds: bounds_of(&input),
                        data: input,
                    });
                }
            }
            Err(msg) => return crash(&input, &msg),
        }
        iterations += 1;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "  {iterations} inputs in {secs:.1} s ({:.0}/s), corpus {}, outcomes {}",
                iterations as f64 / secs.max(1e-9),
                corpus.len(),
                seen.len()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz_rdb: {iterations} inputs in {secs:.1} s, 0 failures ({:.0}/s, corpus {}, outcomes {})",
        iterations as f64 / secs.max(1e-9),
        corpus.len(),
        seen.len()
    );
    println!(
        "  slowest input {:.1} ms ({} bytes); largest phase peak allocation {:.1} MiB \
         ({}-byte input); beyond 1 MiB at most {} bytes per input byte (inputs >= 4 KiB)",
        slowest.0.as_secs_f64() * 1e3,
        slowest.1,
        check::MAX_PEAK.load(Relaxed) as f64 / (1 << 20) as f64,
        check::MAX_PEAK_LEN.load(Relaxed),
        check::MAX_RATIO.load(Relaxed)
    );
    ExitCode::SUCCESS
}
