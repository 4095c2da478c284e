//! Snapshot records: what each key of the RDB becomes.

use bytes::Bytes;
use ferry_rdb::{Item, Value};

use super::{Action, SkipReason, Translator, lossy};
use crate::filter::is_reserved;
use crate::op::{Args, Op};
use crate::slot::key_slot;

impl Translator {
    /// One decoded RDB record, `now_ms` the wall clock (unix ms) for the
    /// expiry check.
    pub fn rdb(&mut self, mut item: Item, now_ms: i64, out: &mut Vec<Action>) {
        self.rdb_in_place(&mut item, now_ms, out);
    }

    /// [`Translator::rdb`] without moving the record: the bytes the ops
    /// need (key, value, function code) are taken out of `item`, which is
    /// left with empty `Bytes` in their place (to be dropped). A record is
    /// a few hundred bytes; the caller's event buffer keeps it where the
    /// link put it.
    pub fn rdb_in_place(&mut self, item: &mut Item, now_ms: i64, out: &mut Vec<Action>) {
        // +1: a snapshot at offset 0 must still count as "something to acknowledge".
        let off = self.snapshot_offset + 1;
        match item {
            Item::Header { flavor, version } => self.file = Some((*flavor, *version)),
            Item::Aux { key, value } if &key[..] == b"ctime" => {
                self.hold.ctime_ms = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .map(|s| s.saturating_mul(1000));
            }
            Item::Function { code } => {
                let code = std::mem::take(code);
                let args = vec!["FUNCTION".into(), "LOAD".into(), "REPLACE".into(), code];
                self.write(out, Op::all_masters(args, off));
            }
            // A server loading the dump skips it too (and counts it).
            Item::EmptyKey(h) => {
                let detail = format!("{} (empty {:?} in the RDB)", lossy(&h.key), h.rdb_type);
                self.skip(out, SkipReason::EmptyKey, Some(&h.key), detail);
            }
            Item::ModuleAux { module, .. } => {
                let detail = format!("module aux data of {}", module.name());
                self.skip(out, SkipReason::ModuleAux, None, detail);
            }
            Item::Key(k) => {
                let h = &k.header;
                if is_reserved(&h.key) {
                    let detail = lossy(&h.key);
                    let key = h.key.clone();
                    self.skip(out, SkipReason::ReservedPrefix, Some(&key), detail);
                    return;
                }
                if !self.keep_db(h.db) {
                    self.counters.skip(SkipReason::FilteredDb);
                    return;
                }
                if !self.cfg.filter.key(&h.key) {
                    self.counters.skip(SkipReason::FilteredKey);
                    return;
                }
                if h.expire_ms
                    .is_some_and(|t| t <= self.expired_before(now_ms))
                {
                    let (key, detail) = (h.key.clone(), lossy(&h.key));
                    self.skip(out, SkipReason::Expired, Some(&key), detail);
                    return;
                }
                if let Value::Module(m) = &k.value
                    && !self.missing_module_types.is_empty()
                    && let Some(module) = self.missing_module_types.get(&m.id.name())
                {
                    let detail =
                        format!("{} (module {module}, type {})", lossy(&h.key), m.id.name());
                    let key = h.key.clone();
                    self.skip(out, SkipReason::ModuleMissing, Some(&key), detail);
                    return;
                }
                self.select(h.db, off, out);
                if let Some(p) = self.prefix(k.header.db) {
                    k.header.key = crate::rewrite::prefixed(&p, &k.header.key);
                }
                let h = &mut k.header;
                self.hold_snapshot_key(h.db, &h.key, &mut h.expire_ms, now_ms, out);
                let h = &k.header;
                let slot = key_slot(&h.key);
                let stamp = match (self.cfg.restore, self.file) {
                    (true, Some((flavor, version))) => {
                        self.cfg.target.stamp(flavor, version, h.rdb_type)
                    }
                    _ => None,
                };
                if stamp.is_some()
                    && h.expire_ms.is_none()
                    && let Value::String(v) = &mut k.value
                {
                    // A plain string without TTL: SET leaves the same key as
                    // RESTORE REPLACE and costs the target less (no payload
                    // to check and parse). Key and value move into the op.
                    let (key, v) = (std::mem::take(&mut k.header.key), std::mem::take(v));
                    let args = Args::from_buf([Bytes::from_static(b"SET"), key, v]);
                    self.write(out, Op::slot(args, slot, off));
                    self.counters.keys_applied += 1;
                    return;
                }
                let mut cmds = Vec::new();
                if let Some(version) = stamp {
                    let mut c: Vec<Bytes> = vec![
                        "RESTORE".into(),
                        h.key.clone(),
                        h.expire_ms.unwrap_or(0).to_string().into(),
                        k.restore_payload(version),
                        "REPLACE".into(),
                    ];
                    if h.expire_ms.is_some() {
                        c.push("ABSTTL".into());
                    }
                    cmds.push(c);
                } else if let Err(u) = self
                    .builder
                    .whole(h, &k.value, &k.raw, &mut |c| cmds.push(c))
                {
                    let detail = format!("{}: {}", lossy(&u.key), u.reason);
                    self.skip(out, SkipReason::UnsupportedValue, Some(&u.key), detail);
                }
                for c in cmds {
                    self.write(out, Op::slot(c, slot, off));
                }
                self.counters.keys_applied += 1;
            }
            Item::BigKeyStart(h) => {
                let mut h = h.clone();
                if is_reserved(&h.key) {
                    let (key, detail) = (h.key.clone(), lossy(&h.key));
                    self.skip(out, SkipReason::ReservedPrefix, Some(&key), detail);
                    self.big = None;
                    return;
                }
                let keep = self.keep_db(h.db) && self.cfg.filter.key(&h.key);
                if keep {
                    self.select(h.db, off, out);
                } else if self.keep_db(h.db) {
                    self.counters.skip(SkipReason::FilteredKey);
                } else {
                    self.counters.skip(SkipReason::FilteredDb);
                }
                if let Some(p) = self.prefix(h.db) {
                    h.key = crate::rewrite::prefixed(&p, &h.key);
                }
                if keep {
                    self.hold_snapshot_key(h.db, &h.key, &mut h.expire_ms, now_ms, out);
                }
                self.big = keep.then_some((h, true));
            }
            Item::BigKeyChunk(v) => {
                if let Some((h, first)) = self.big.take() {
                    let mut cmds = Vec::new();
                    if let Err(u) = self.builder.chunk(&h, v, first, &mut |c| cmds.push(c)) {
                        let detail = format!("{}: {}", lossy(&u.key), u.reason);
                        self.skip(out, SkipReason::UnsupportedValue, Some(&u.key), detail);
                    }
                    let slot = key_slot(&h.key);
                    for c in cmds {
                        self.write(out, Op::slot(c, slot, off));
                    }
                    self.big = Some((h, false));
                }
            }
            Item::BigKeyEnd => {
                if let Some((h, _)) = self.big.take() {
                    let mut cmds = Vec::new();
                    self.builder.finish_key(&h, &mut |c| cmds.push(c));
                    let slot = key_slot(&h.key);
                    for c in cmds {
                        self.write(out, Op::slot(c, slot, off));
                    }
                    self.counters.keys_applied += 1;
                }
            }
            _ => {}
        }
    }
}
