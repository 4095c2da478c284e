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
//! `tests/dashboard.rs` renders this page in headless Chromium against a fake
//! `/status`. Tests cannot import the binary's modules, so it reads the page
//! from this file's source text: everything after `pub const PAGE: &str = r#"`
//! up to the next `"#`. Keep `PAGE` a raw string declared exactly like that.

/// The dashboard page (HTML with inline CSS and JS).
pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ferry dashboard</title>
<link rel="icon" href="data:,">
<style>
  :root {
    --bg: #0f1419; --panel: #171e26; --line: #263140; --fg: #e6edf3;
    --muted: #8b98a8; --bytes: #4aa3ff; --secs: #ffb454; --ok: #2ea043;
    --warn: #d29922; --bad: #f85149; --info: #388bfd; --pause: #a371f7;
  }
  * { box-sizing: border-box; }
  html, body { margin: 0; background: var(--bg); color: var(--fg);
    font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; }
  .mono, .value { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace; }
  header { display: flex; align-items: center; gap: 16px; padding: 14px 24px;
    border-bottom: 1px solid var(--line); background: var(--panel); }
  header h1 { font-size: 20px; margin: 0; letter-spacing: .5px; }
  header h1 small { color: var(--muted); font-weight: normal; font-size: 14px; margin-left: 6px; }
  .badge { display: inline-block; padding: 3px 12px; border-radius: 999px; font-weight: 600;
    font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: #fff; background: #555; }
  .badge.connecting { background: var(--warn); }
  .badge.snapshot { background: var(--info); }
  .badge.streaming { background: var(--ok); }
  .badge.paused { background: var(--pause); }
  .badge.stopped { background: #6e7681; }
  .badge.error { background: var(--bad); }
  .badge.unreachable { background: #3d444d; color: var(--muted); }
  #updated { margin-left: auto; color: var(--muted); font-size: 13px; }
  main { padding: 18px 24px 24px; display: grid; gap: 14px; }
  .banner { padding: 10px 14px; border-radius: 6px; font-weight: 600; }
  .banner.down { background: #3b2300; border: 1px solid var(--warn); color: #ffd9a0; }
  .banner.err { background: #3c1618; border: 1px solid var(--bad); color: #ffc1bd; }
  .banner pre { margin: 6px 0 0; white-space: pre-wrap; font-weight: normal; }
  [hidden] { display: none !important; }
  .cards { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 14px; }
  .card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  .card h2 { margin: 0 0 6px; font-size: 12px; font-weight: 600; color: var(--muted);
    text-transform: uppercase; letter-spacing: .6px; }
  .value { font-size: 24px; font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .sub { color: var(--muted); font-size: 12px; margin-top: 2px; min-height: 17px; }
  .stale .value, .stale canvas, .stale td { opacity: .45; }
  .chart-head { display: flex; align-items: baseline; gap: 18px; }
  .legend { display: flex; gap: 16px; color: var(--muted); font-size: 12px; }
  .legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 6px; }
  #chart { width: 100%; height: 260px; display: block; }
  .row2 { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
  .bar { height: 12px; background: var(--line); border-radius: 6px; overflow: hidden; margin: 8px 0 6px; }
  .bar > div { height: 100%; width: 0; background: var(--info); transition: width .4s; }
  table { width: 100%; border-collapse: collapse; }
  td { padding: 4px 0; border-bottom: 1px solid var(--line); }
  td.n { text-align: right; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
  tfoot td { border-bottom: none; font-weight: 600; }
  .none { color: var(--muted); }
  .sub.bad { color: var(--bad); font-weight: 600; }
</style>
</head>
<body>
<header>
  <h1>ferry <small>Redis &rarr; Redis Cluster live migration</small></h1>
  <span id="phase" class="badge">loading</span>
  <span id="updated">waiting for /status&hellip;</span>
</header>
<main id="main">
  <div id="unreachable" class="banner down" hidden>daemon not reachable &mdash; <span id="unreachable-detail"></span></div>
  <div id="error" class="banner err" hidden>error<pre id="error-text"></pre></div>

  <section class="cards">
    <div class="card"><h2>Source offset</h2><div class="value" id="source-offset">&ndash;</div>
      <div class="sub">received <span id="received-offset" class="mono">&ndash;</span></div></div>
    <div class="card"><h2>Applied offset</h2><div class="value" id="applied-offset">&ndash;</div>
      <div class="sub">acknowledged by the target</div></div>
    <div class="card"><h2>Lag (bytes)</h2><div class="value" id="lag-bytes">&ndash;</div>
      <div class="sub" id="lag-bytes-human"></div></div>
    <div class="card"><h2>Lag (time)</h2><div class="value" id="lag-seconds">&ndash;</div>
      <div class="sub">age of the oldest unapplied byte</div></div>
    <div class="card"><h2>Keys / s</h2><div class="value" id="keys-rate">&ndash;</div>
      <div class="sub"><span id="keys-applied" class="mono">&ndash;</span> keys applied</div></div>
    <div class="card"><h2>Commands / s</h2><div class="value" id="cmds-rate">&ndash;</div>
      <div class="sub"><span id="commands-applied" class="mono">&ndash;</span> commands applied,
        <span id="commands-emulated" class="mono">&ndash;</span> cross-slot emulated</div>
      <div class="sub" id="rate-limit"></div></div>
    <div class="card"><h2>Spool</h2><div class="value" id="spool-bytes">&ndash;</div>
      <div class="sub">received, waiting to be applied</div></div>
    <div class="card"><h2>Reconnects</h2><div class="value" id="reconnects">&ndash;</div>
      <div class="sub">to the source</div></div>
  </section>

  <section class="card">
    <div class="chart-head"><h2>Lag &mdash; last 5 minutes</h2>
      <div class="legend"><span><i style="background: var(--bytes)"></i>bytes (left axis)</span>
        <span><i style="background: var(--secs)"></i>seconds (right axis)</span></div></div>
    <canvas id="chart"></canvas>
  </section>

  <section class="row2">
    <div class="card"><h2>Snapshot</h2>
      <div class="value" id="snapshot-pct">&ndash;</div>
      <div class="bar"><div id="snapshot-bar"></div></div>
      <div class="sub" id="snapshot-detail"></div>
      <div class="sub" id="verify-line">sampled verify: &ndash;</div></div>
    <div class="card"><h2>Not carried (by reason)</h2>
      <table><tbody id="skipped-body"><tr><td class="none" colspan="2">none</td></tr></tbody>
        <tfoot><tr><td>total</td><td class="n" id="skipped-total">0</td></tr></tfoot></table></div>
  </section>
</main>
<script>
'use strict';
(function () {
  var POLL_MS = 1000, WINDOW_MS = 5 * 60 * 1000, TIMEOUT_MS = 2500;
  var hist = [];          // {t, b, s} with b/s null for a gap (daemon unreachable)
  var prev = null;        // last good status and its time, for rates
  var lastOk = 0;
  // http.token: taken once from ?token=..., kept for this tab only and
  // removed from the address bar.
  var TOKEN = null;
  try {
    var m = /[?&]token=([^&]*)/.exec(location.search);
    if (m) {
      TOKEN = decodeURIComponent(m[1]);
      sessionStorage.setItem('ferry-token', TOKEN);
      history.replaceState(null, '', location.pathname);
    } else {
      TOKEN = sessionStorage.getItem('ferry-token');
    }
  } catch (e) { /* no storage: the token lives in this page only */ }

  function $(id) { return document.getElementById(id); }
  function set(id, text) { $(id).textContent = text; }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function group(n) {
    if (n === null || n === undefined) return '\u2013';
    var s = String(Math.round(n)), neg = s.charAt(0) === '-';
    if (neg) s = s.slice(1);
    return (neg ? '-' : '') + s.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }
  function bytes(n) {
    if (n === null) return '\u2013';
    var u = ['B', 'kB', 'MB', 'GB', 'TB'], i = 0, v = Math.abs(n);
    while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return (n < 0 ? '-' : '') + (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + u[i];
  }
  function secs(s) {
    if (s === null) return '\u2013';
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + Math.floor(s % 60) + 's';
    return Math.floor(m / 60) + 'h ' + (m % 60) + 'm';
  }
  function rate(r) {
    if (r === null) return '\u2013';
    return r >= 100 ? group(r) : r.toFixed(1);
  }
  function clock(t) {
    var d = new Date(t);
    function p(x) { return (x < 10 ? '0' : '') + x; }
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function setPhase(p) {
    var el = $('phase');
    el.textContent = p;
    el.className = 'badge ' + String(p).replace(/[^a-z]/gi, '');
  }

  function render(st, now) {
    setPhase(st.phase || 'unknown');
    $('main').classList.remove('stale');
    $('unreachable').hidden = true;
    set('updated', 'updated ' + clock(now));

    set('source-offset', group(num(st.source_offset)));
    set('received-offset', group(num(st.received_offset)));
    set('applied-offset', group(num(st.applied_offset)));
    var lb = num(st.lag_bytes), ls = num(st.lag_seconds);
    set('lag-bytes', group(lb));
    set('lag-bytes-human', lb === null ? 'unknown until the source reports its offset' : bytes(lb));
    set('lag-seconds', secs(ls));
    set('spool-bytes', bytes(num(st.spool_bytes)));
    set('reconnects', group(num(st.reconnects)));

    var ka = num(st.keys_applied), ca = num(st.commands_applied);
    set('keys-applied', group(ka));
    set('commands-applied', group(ca));
    set('commands-emulated', group(num(st.emulated)));
    set('rate-limit', st.target && st.target.rate_limited
      ? 'target rate limit binding: the limit sets the pace, lag grows' : '');
    var kr = null, cr = null;
    if (prev) {
      var dt = (now - prev.t) / 1000;
      if (dt > 0) {
        if (ka !== null && num(prev.st.keys_applied) !== null && ka >= prev.st.keys_applied)
          kr = (ka - prev.st.keys_applied) / dt;
        if (ca !== null && num(prev.st.commands_applied) !== null && ca >= prev.st.commands_applied)
          cr = (ca - prev.st.commands_applied) / dt;
      }
    }
    set('keys-rate', rate(kr));
    set('cmds-rate', rate(cr));
    prev = { t: now, st: st };

    renderSnapshot(st, ka);
    renderSkipped(st.skipped || {});
    renderVerify(st.verify);

    if (st.error) { $('error').hidden = false; set('error-text', String(st.error)); }
    else { $('error').hidden = true; }

    hist.push({ t: now, b: lb === null ? 0 : lb, s: ls === null ? 0 : ls });
  }

  function renderSnapshot(st, ka) {
    var sn = st.snapshot && typeof st.snapshot === 'object' ? st.snapshot : {};
    var kd = num(sn.keys_done), kt = num(sn.keys_total);
    var bd = num(sn.bytes_done), bt = num(sn.bytes_total);
    var pct = num(sn.percent);
    if (pct === null && bd !== null && bt) pct = 100 * bd / bt;
    if (pct === null && kd !== null && kt) pct = 100 * kd / kt;
    if (pct === null && (st.phase === 'streaming' || st.phase === 'stopped')) pct = 100;
    set('snapshot-pct', pct === null ? (st.phase === 'snapshot' ? 'loading' : '\u2013')
      : Math.min(100, pct).toFixed(pct >= 100 ? 0 : 1) + ' %');
    $('snapshot-bar').style.width = (pct === null ? 0 : Math.min(100, pct)) + '%';
    var parts = [];
    var keys = kd !== null ? kd : ka;
    if (keys !== null) parts.push(group(keys) + (kt ? ' / ' + group(kt) : '') + ' keys');
    if (bd !== null) parts.push(bytes(bd) + (bt ? ' / ' + bytes(bt) : ''));
    if (sn.transfer === 'diskless') parts.push('diskless sync: size unknown');
    set('snapshot-detail', parts.join(' \u00b7 '));
  }

  function renderVerify(v) {
    var el = $('verify-line');
    if (!v || typeof v !== 'object') { el.textContent = 'sampled verify: \u2013'; return; }
    if (!num(v.sample_per_second)) { el.textContent = 'sampled verify: off'; el.className = 'sub'; return; }
    var mm = num(v.mismatches) || 0;
    el.textContent = 'sampled verify: ' + group(num(v.checked) || 0) + ' keys checked, ' + group(mm) +
      ' mismatch' + (mm === 1 ? '' : 'es') + (v.last_mismatch ? ' (last: ' + v.last_mismatch + ')' : '');
    el.className = mm > 0 ? 'sub bad' : 'sub';
  }

  function renderSkipped(sk) {
    var body = $('skipped-body'), reasons = Object.keys(sk).sort(), total = 0;
    while (body.firstChild) body.removeChild(body.firstChild);
    reasons.forEach(function (r) {
      var tr = document.createElement('tr'), a = document.createElement('td'), b = document.createElement('td');
      a.textContent = r; b.textContent = group(num(sk[r])); b.className = 'n';
      tr.appendChild(a); tr.appendChild(b); body.appendChild(tr);
      total += num(sk[r]) || 0;
    });
    if (!reasons.length) {
      var tr = document.createElement('tr'), td = document.createElement('td');
      td.textContent = 'none'; td.className = 'none'; td.colSpan = 2; tr.appendChild(td); body.appendChild(tr);
    }
    set('skipped-total', group(total));
  }

  function unreachable(why, now) {
    setPhase('unreachable');
    $('main').classList.add('stale');
    $('unreachable').hidden = false;
    set('unreachable-detail', why + (lastOk ? '; last update ' + clock(lastOk) : '; no update yet') + ', retrying');
    set('updated', 'no answer at ' + clock(now));
    set('keys-rate', '\u2013');
    set('cmds-rate', '\u2013');
    prev = null;
    if (hist.length && hist[hist.length - 1].b !== null) hist.push({ t: now, b: null, s: null });
  }

  // --- chart ---------------------------------------------------------------
  function niceTop(max) {
    if (!(max > 0)) return 4;
    var raw = max / 4, p = Math.pow(10, Math.floor(Math.log10(raw))), steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= raw) return steps[i] * p * 4;
    return 40 * p;
  }

  function drawChart(now) {
    var c = $('chart'), dpr = window.devicePixelRatio || 1;
    var w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    var g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    var L = 78, R = 64, T = 10, B = 26, pw = w - L - R, ph = h - T - B;
    while (hist.length && hist[0].t < now - WINDOW_MS) hist.shift();
    var first = hist.length ? hist[0].t : now;
    var span = Math.min(WINDOW_MS, Math.max(60000, now - first));
    var t0 = now - span;
    var maxB = 0, maxS = 0;
    hist.forEach(function (p) { if (p.b !== null) { maxB = Math.max(maxB, p.b); maxS = Math.max(maxS, p.s); } });
    var topB = niceTop(maxB), topS = niceTop(maxS);
    function x(t) { return L + (t - t0) / span * pw; }
    function yB(v) { return T + ph - v / topB * ph; }
    function yS(v) { return T + ph - v / topS * ph; }

    g.font = '11px ui-monospace, DejaVu Sans Mono, monospace';
    g.lineWidth = 1;
    // horizontal grid + y labels
    for (var i = 0; i <= 4; i++) {
      var y = Math.round(T + ph - i * ph / 4) + 0.5;
      g.strokeStyle = '#263140'; g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
      g.fillStyle = '#4aa3ff'; g.textAlign = 'right'; g.textBaseline = 'middle';
      g.fillText(bytes(topB * i / 4), L - 8, y);
      g.fillStyle = '#ffb454'; g.textAlign = 'left';
      g.fillText(secs(topS * i / 4), L + pw + 8, y);
    }
    // vertical grid + time labels
    var step = span > 150000 ? 60000 : span > 60000 ? 30000 : 10000;
    g.textAlign = 'center'; g.textBaseline = 'top'; g.fillStyle = '#8b98a8';
    for (var a = 0; a <= span + 1; a += step) {
      var xx = Math.round(x(now - a)) + 0.5;
      g.strokeStyle = '#263140'; g.beginPath(); g.moveTo(xx, T); g.lineTo(xx, T + ph); g.stroke();
      var lab = a === 0 ? 'now' : a % 60000 === 0 ? '-' + a / 60000 + 'm' : '-' + a / 1000 + 's';
      g.fillText(lab, Math.min(Math.max(xx, L + 12), L + pw - 12), T + ph + 6);
    }
    g.strokeStyle = '#3d4a5c'; g.strokeRect(L + 0.5, T + 0.5, pw, ph);

    if (!hist.length) {
      g.fillStyle = '#8b98a8'; g.textAlign = 'center'; g.textBaseline = 'middle';
      g.font = '13px system-ui, sans-serif';
      g.fillText('no data yet', L + pw / 2, T + ph / 2);
      return;
    }
    function series(key, yf, color) {
      g.strokeStyle = color; g.lineWidth = 2; g.lineJoin = 'round';
      g.beginPath();
      var pen = false, last = null;
      hist.forEach(function (p) {
        if (p[key] === null) { pen = false; return; }
        var px = x(p.t), py = yf(p[key]);
        if (pen) g.lineTo(px, py); else g.moveTo(px, py);
        pen = true; last = [px, py];
      });
      g.stroke();
      if (last) { g.fillStyle = color; g.beginPath(); g.arc(last[0], last[1], 3.5, 0, 2 * Math.PI); g.fill(); }
    }
    series('b', yB, '#4aa3ff');
    series('s', yS, '#ffb454');
  }

  // --- polling -------------------------------------------------------------
  function poll() {
    var ctl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, TIMEOUT_MS);
    var headers = TOKEN ? { 'Authorization': 'Bearer ' + TOKEN } : {};
    fetch('/status', { cache: 'no-store', headers: headers, signal: ctl ? ctl.signal : undefined })
      .then(function (r) {
        if (r.status === 401) throw new Error('/status needs the token: open this page as /?token=<http.token>');
        if (!r.ok) throw new Error('/status answered ' + r.status);
        return r.json();
      })
      .then(function (st) {
        var now = Date.now();
        lastOk = now;
        render(st, now);
      })
      .catch(function (e) {
        unreachable(e && e.name === 'AbortError' ? 'no answer within ' + TIMEOUT_MS / 1000 + ' s'
          : (e && e.message) || String(e), Date.now());
      })
      .then(function () {
        clearTimeout(timer);
        drawChart(Date.now());
        setTimeout(poll, POLL_MS);
      });
  }
  window.addEventListener('resize', function () { drawChart(Date.now()); });
  drawChart(Date.now());
  poll();
})();
</script>
</body>
</html>
"#;

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
