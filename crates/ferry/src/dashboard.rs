//! The built-in dashboard served at `/` by `ferry run`.
//!
//! One self-contained HTML page: inline CSS and JavaScript only, no fonts,
//! scripts or styles from anywhere else, so it works on an air-gapped host.
//! The script polls `/status` (same origin) once a second and shows:
//!
//! * the phase as a coloured badge (`connecting`, `snapshot`, `streaming`,
//!   `paused`, `stopped`, `error`; grey "unreachable" when `/status` fails);
//! * source, received and applied offsets, lag in bytes and seconds;
//! * a live line chart of lag bytes (left axis) and lag seconds (right
//!   axis) over the last 5 minutes, drawn on a `<canvas>`;
//! * keys/s and commands/s, computed from successive polls;
//! * snapshot progress: `keys_applied`, plus a progress bar when `/status`
//!   carries a `snapshot` object with `keys_done`/`keys_total` or
//!   `bytes_done`/`bytes_total` (or `percent`);
//! * keys not carried by reason (`skipped`), spool bytes, reconnects and
//!   the error, if any;
//! * the sampled verify line (`verify`: keys checked, mismatches, the last
//!   one), red when a mismatch was confirmed.
//!
//! With `http.token` set, open the page once as `/?token=<token>`: the script
//! keeps the token for the tab (sessionStorage), removes it from the address
//! bar and sends it as `Authorization: Bearer` with every `/status` poll.
//!
//! When `/status` cannot be fetched the page keeps the last values (dimmed),
//! shows "daemon not reachable" and keeps retrying. The history lives only in
//! the browser tab: reloading the page starts an empty chart.
//!
//! The page itself lives in `dashboard.html` beside this file and is built
//! into the binary with `include_str!`. `tests/e2e/dashboard.rs` renders the same
//! file in headless Chromium against a fake `/status`.

/// The dashboard page (HTML with inline CSS and JS).
pub const PAGE: &str = include_str!("dashboard.html");

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        let lower = PAGE.to_ascii_lowercase();
        for bad in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!lower.contains(bad), "the page must not reference {bad}");
        }
        for tag in ["<script src", "<link rel=\"stylesheet\"", "<img", "<iframe"] {
            assert!(!lower.contains(tag), "the page must not load {tag}");
        }
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.trim_end().ends_with("</html>"));
    }

    #[test]
    fn every_id_the_script_uses_exists() {
        let script = &PAGE[PAGE.find("<script>").expect("inline script")..];
        let mut used = Vec::new();
        for part in script.split("$('").skip(1) {
            let id = &part[..part.find('\'').expect("closing quote")];
            used.push(id);
        }
        for part in script.split("set('").skip(1) {
            let id = &part[..part.find('\'').expect("closing quote")];
            used.push(id);
        }
        assert!(used.len() > 15, "found only {used:?}");
        for id in used {
            assert!(
                PAGE.contains(&format!("id=\"{id}\"")),
                "the script uses #{id}, which is not in the page"
            );
        }
    }

    #[test]
    fn page_polls_status() {
        assert!(PAGE.contains("fetch('/status'"));
        assert!(PAGE.contains("daemon not reachable"));
    }
}
