//! What `ferry verify` found (counts and first keys by reason) and how it
//! shows progress: a bar on a terminal, a status line on stderr otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

/// Why a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// Another type.
    Type,
    /// Same type, another value.
    Value,
    /// Same value, TTLs differ beyond the tolerance.
    Ttl,
}

impl Reason {
    /// Every reason, in report order.
    pub const ALL: [Reason; 5] = [
        Reason::Missing,
        Reason::Extra,
        Reason::Type,
        Reason::Value,
        Reason::Ttl,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The group heading of the report.
    pub fn title(self) -> &'static str {
        match self {
            Reason::Missing => "missing (on the source, not on the target)",
            Reason::Extra => "extra (on the target, not on the source)",
            Reason::Type => "type differs",
            Reason::Value => "value differs",
            Reason::Ttl => "ttl differs",
        }
    }
}

/// Counters and the first differing keys of each reason; saved with the
/// cursor for `--resume`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// Source keys compared.
    pub compared: u64,
    /// Source keys outside the filter.
    pub ignored: u64,
    /// Source keys gone between `SCAN` and the read.
    pub gone: u64,
    /// Target keys looked up on the source.
    pub target_scanned: u64,
    /// Differences by reason ([`Reason::ALL`] order).
    pub counts: [u64; 5],
    /// The first report lines of each reason.
    pub first: [Vec<String>; 5],
}

impl Tally {
    /// Count one difference; keep its line among the first `show`.
    pub fn add(&mut self, reason: Reason, line: String, show: usize) {
        let i = reason.index();
        self.counts[i] += 1;
        if self.first[i].len() < show {
            self.first[i].push(line);
        }
    }

    /// Add another tally's counts and lines.
    pub fn merge(&mut self, other: Tally, show: usize) {
        self.compared += other.compared;
        self.ignored += other.ignored;
        self.gone += other.gone;
        self.target_scanned += other.target_scanned;
        for i in 0..5 {
            self.counts[i] += other.counts[i];
            let room = show.saturating_sub(self.first[i].len());
            self.first[i].extend(other.first[i].iter().take(room).cloned());
        }
    }

    /// Differences of every reason.
    pub fn diffs(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Source keys seen (compared, outside the filter, or gone).
    pub fn source_seen(&self) -> u64 {
        self.compared + self.ignored + self.gone
    }

    /// The report: differences grouped by reason, then the final line.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if self.diffs() > 0 {
            let counts: Vec<String> = Reason::ALL
                .iter()
                .map(|r| format!("{} {}", name(*r), self.counts[r.index()]))
                .collect();
            out.push_str(&format!("differences by reason: {}\n", counts.join(", ")));
        }
        for r in Reason::ALL {
            let (n, first) = (self.counts[r.index()], &self.first[r.index()]);
            if n == 0 {
                continue;
            }
            out.push_str(&format!("{}: {n} keys\n", r.title()));
            for line in first {
                out.push_str(&format!("differs: {line}\n"));
            }
            if n > first.len() as u64 {
                out.push_str(&format!("  … and {} more\n", n - first.len() as u64));
            }
        }
        out.push_str(&format!(
            "verify: {} keys compared, {} differ ({} only on the target), \
             {} source keys outside the filter\n",
            self.compared,
            self.diffs(),
            self.counts[Reason::Extra.index()],
            self.ignored
        ));
        out
    }
}

fn name(r: Reason) -> &'static str {
    match r {
        Reason::Missing => "missing",
        Reason::Extra => "extra",
        Reason::Type => "type",
        Reason::Value => "value",
        Reason::Ttl => "ttl",
    }
}

/// Progress on stderr: a bar on a terminal, otherwise a line every `every`.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    every: Duration,
    last: Instant,
    start: Instant,
    /// Source keys seen when this run started (`--resume`).
    base: u64,
    /// Source keys expected (`INFO keyspace`, or the sample size).
    total: u64,
}

impl Progress {
    /// Start showing progress towards `total` source keys, `base` of them
    /// seen by an earlier, interrupted run.
    pub fn new(total: u64, base: u64, every: Duration) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:20} {human_pos}/{human_len} keys {percent}% · {msg} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(base);
            bar.reset_eta();
            bar
        });
        Progress {
            bar,
            every,
            last: Instant::now(),
            start: Instant::now(),
            base,
            total,
        }
    }

    /// Show `t` (the bar at once, the line when one is due).
    pub fn update(&mut self, t: &Tally) {
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.max(t.source_seen()));
            bar.set_position(t.source_seen());
            let secs = self.start.elapsed().as_secs_f64().max(0.001);
            let rate = t.source_seen().saturating_sub(self.base) as f64 / secs;
            bar.set_message(format!("{} differ · {rate:.0} keys/s", t.diffs()));
        } else if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            eprintln!("{}", self.line(t));
        }
    }

    /// The status line.
    pub fn line(&self, t: &Tally) -> String {
        let seen = t.source_seen();
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = seen.saturating_sub(self.base) as f64 / secs;
        let pct = if self.total == 0 {
            100.0
        } else {
            (seen as f64 * 100.0 / self.total as f64).min(100.0)
        };
        let eta = if rate > 0.0 {
            format!("{:.0} s", self.total.saturating_sub(seen) as f64 / rate)
        } else {
            "unknown".into()
        };
        format!(
            "verify: {seen}/{} source keys ({pct:.1}%), {} compared, {} differ, \
             {rate:.0} keys/s, ETA {eta}; {} target keys checked",
            self.total,
            t.compared,
            t.diffs(),
            t.target_scanned
        )
    }

    /// Whether a bar is drawn (stderr is a terminal).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Remove the bar (the final report follows on stdout).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_groups_by_reason_and_caps_the_lines() {
        let mut t = Tally {
            compared: 10,
            ..Tally::default()
        };
        t.add(Reason::Value, "\"a\": value differs".into(), 1);
        t.add(Reason::Value, "\"b\": value differs".into(), 1);
        t.add(
            Reason::Extra,
            "\"c\": present on the target, not on the source".into(),
            1,
        );
        let r = t.report();
        assert!(
            r.contains("differences by reason: missing 0, extra 1, type 0, value 2, ttl 0"),
            "{r}"
        );
        assert!(
            r.contains("value differs: 2 keys\ndiffers: \"a\": value differs\n  … and 1 more"),
            "{r}"
        );
        assert!(!r.contains("\"b\""), "{r}");
        assert!(r.ends_with("verify: 10 keys compared, 3 differ (1 only on the target), 0 source keys outside the filter\n"), "{r}");
        let mut u = Tally::default();
        u.merge(t.clone(), 5);
        assert_eq!(u.counts, t.counts);
    }

    #[test]
    fn status_line_has_rate_and_eta() {
        let p = Progress {
            bar: None,
            every: Duration::from_secs(10),
            last: Instant::now(),
            start: Instant::now() - Duration::from_secs(10),
            base: 0,
            total: 2000,
        };
        let t = Tally {
            compared: 1000,
            ..Tally::default()
        };
        let line = p.line(&t);
        assert!(line.starts_with("verify: 1000/2000 source keys (50.0%), 1000 compared, 0 differ, 100 keys/s, ETA 10 s"), "{line}");
    }
}
