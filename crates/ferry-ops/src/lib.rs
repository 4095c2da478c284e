//! Pure decisions and cluster-routing data for ferry: no I/O, no async runtime.
//!
//! * [`slot`]: [`key_slot`], the CRC16/hash-tag rule that maps a key to one of
//!   16384 slots.
//! * [`keys`]: where the keys are in each command a replication stream can
//!   carry ([`command_keys`], [`key_spec`]); unknown commands are reported,
//!   never guessed.
//! * [`split`](mod@split): [`route`] decides where a replicated command goes on a
//!   cluster target: one slot, one command per slot (multi-key `MSET`/`DEL`
//!   split), every master (`FLUSHALL`, `FUNCTION LOAD`), nowhere (`PING`,
//!   `SELECT`, `MULTI` — the caller's business) or not at all (cross-slot
//!   `RENAME`, `PUBLISH`) with a typed reason.
//! * [`emulate`]: [`plan`]s that replay a cross-slot command so the target
//!   ends with the same values (`RENAME` as a key copy, `SMOVE` split,
//!   `SUNIONSTORE` & co. computed next to the destination).
//! * [`rewrite`]: key names prefixed per source db ([`prefix_keys`]).
//! * [`translate`]: the [`Translator`]: what each snapshot key and stream
//!   command becomes ([`Action`]s: [`Op`]s per slot, groups, emulation
//!   plans, skips with a typed [`SkipReason`]), with the [`Filter`] and the
//!   [`TargetFormat`] it decides by.
//! * [`topology`]: `CLUSTER SHARDS` / `CLUSTER SLOTS` replies (RESP2 or RESP3)
//!   into a [`Topology`] with a [`SlotMap`] keyed by range end.
//! * [`nodes`]: node entries of those replies (endpoint rules, TLS ports),
//!   and every node address they name ([`shards_node_addrs`]).
//! * [`cluster_nodes`]: `CLUSTER NODES` text ([`NodeLine`]: slots, replicas,
//!   migration markers) and Valkey 9's `CLUSTER GETSLOTMIGRATIONS`.
//! * [`source_watch`]: the [`SourceWatch`] state machine that follows a
//!   source cluster's resharding (gates, resyncs, master changes) over a
//!   [`SlotSet`] per shard.
//! * [`endpoint`]: the client vocabulary: `redis[s]://` URLs into an
//!   [`Endpoint`], [`Auth`], [`split_host_port`] (IPv6-aware), [`redact`].
//! * [`source_shards`]: the shards of a cluster source (master, replicas,
//!   slots), their names and matching across restarts, the partition.
//! * [`gate`]: [`SlotGate`], the slots a source shard's pipeline owns now.
//! * [`info`]: `INFO` text into fields and keyspace lines ([`Info`]).
//! * [`redirect`]: `-MOVED` / `-ASK` parsing ([`Redirect`]) and the one place
//!   server error replies are classified ([`ErrorKind`]).
//!
//! No input makes any function here panic: malformed commands and replies
//! are typed errors ([`KeyError`], [`TopologyError`], [`EndpointError`]) or
//! `None`.

pub mod cluster_nodes;
pub mod emulate;
pub mod endpoint;
pub mod filter;
pub mod gate;
pub mod info;
pub mod keys;
pub mod nodes;
pub mod op;
pub mod redirect;
pub mod rewrite;
pub mod slot;
pub mod slot_set;
pub mod source_shards;
pub mod source_watch;
pub mod split;
pub mod target;
pub mod topology;
pub mod translate;

pub use cluster_nodes::{
    NodeLine, NodesError, SlotMigration, parse_cluster_nodes, parse_slot_migrations,
};
pub use emulate::{End, Plan, TEMP_PREFIX, plan, slot_tag, temp_key};
pub use endpoint::{Auth, Endpoint, EndpointError, HostPort, host_of, redact, split_host_port};
pub use filter::{Filter, RESERVED_PREFIX, is_reserved};
pub use gate::SlotGate;
pub use info::{DbKeys, Info, InfoError, info_text};
pub use keys::{Class, KeyError, KeyIndexes, KeySpec, Keys, NoKeysKind, command_keys, key_spec};
pub use nodes::{shards_node_addrs, slots_node_addrs};
pub use op::{Args, Op, Tolerate};
pub use redirect::{ErrorKind, Redirect, RedirectKind};
pub use rewrite::{db_prefix, prefix_keys, prefixed};
pub use slot::{SLOTS, key_slot};
pub use slot_set::SlotSet;
pub use source_shards::{
    Assigned, PartitionRecord, RecordedShard, ShardMember, ShardRecord, ShardRecordError,
    SourceShard, ranges_text, reconcile, source_shards, source_shards_from_slots,
};
pub use source_watch::{
    DEFAULT_SETTLE, KnownShard, MasterView, Snapshot, SourceWatch, WatchAction,
};
pub use split::{Route, Split, Unreplayable, route, route_owned, split};
pub use target::TargetFormat;
pub use topology::{Node, SlotMap, Topology, TopologyError};
pub use translate::{Action, Counters, HOLD_MS, Skip, SkipReason, Translator, TranslatorConfig};

/// Bytes for an error message or log line: printable ASCII as is, anything
/// else escaped, cut after 64 bytes (a command argument can be 512 MiB).
pub(crate) fn show(b: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = b[..b.len().min(MAX)].escape_ascii().to_string();
    if b.len() > MAX {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn show_escapes_and_truncates() {
        assert_eq!(super::show(b"SET"), "SET");
        assert_eq!(super::show(b"a\x00\xff"), "a\\x00\\xff");
        let long = vec![b'x'; 100];
        assert_eq!(
            super::show(&long),
            format!("{}...(100 bytes)", "x".repeat(64))
        );
    }
}
