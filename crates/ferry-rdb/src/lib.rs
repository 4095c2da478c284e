//! Streaming, sans-IO decoder for Redis and Valkey RDB files.
//!
//! Covers RDB 1–14 with `REDIS` magic (Redis up to 8.x, Valkey up to 8.x) and
//! RDB 80 with `VALKEY` magic (Valkey 9): every value type and encoding,
//! module values (framed, carried raw), functions, slot info, and the CRC64
//! trailer. Feed bytes with [`Decoder::decode`]; read files with [`RdbReader`].
//! Each whole key carries its raw serialized value, from which
//! [`Key::restore_payload`] builds a `RESTORE` payload; big values come in
//! bounded chunks instead.
//!
//! ```
//! use ferry_rdb::{build::RdbWriter, decode_all, Item, Value};
//! let mut w = RdbWriter::new("REDIS", 11);
//! w.key(0, b"greeting").string(b"hello");
//! let items = decode_all(&w.finish()).unwrap();
//! let Item::Key(k) = &items[1] else { panic!() };
//! assert_eq!(k.value, Value::String("hello".into()));
//! ```

// The test encoder and the packed-container parsers are internals: public
// only with the `test-util` feature (tests, benchmarks, fuzzers), crate-private
// otherwise. Their error types are re-exported below (they are `RdbError`
// sources).
#[cfg(any(test, feature = "test-util"))]
pub mod build;
pub mod commands;
#[cfg(feature = "test-util")]
pub mod container;
#[cfg(not(feature = "test-util"))]
pub(crate) mod container;
pub mod crc64;
mod cursor;
mod decoder;
mod error;
#[cfg(feature = "test-util")]
pub mod intset;
#[cfg(not(feature = "test-util"))]
pub(crate) mod intset;
mod item;
#[cfg(feature = "test-util")]
pub mod listpack;
#[cfg(not(feature = "test-util"))]
pub(crate) mod listpack;
#[cfg(feature = "test-util")]
pub mod lzf;
#[cfg(not(feature = "test-util"))]
pub(crate) mod lzf;
mod read;
mod stream;
mod types;
mod value;
#[cfg(feature = "test-util")]
pub mod ziplist;
#[cfg(not(feature = "test-util"))]
pub(crate) mod ziplist;
#[cfg(feature = "test-util")]
pub mod zipmap;
#[cfg(not(feature = "test-util"))]
pub(crate) mod zipmap;

pub use container::ContainerError;

pub use decoder::{DecodeOptions, Decoder};
pub use error::RdbError;
pub use item::{
    Flavor, HashField, Item, Key, KeyHeader, Kind, ModuleId, ModuleValue, PendingEntry, Stream,
    StreamConsumer, StreamEntry, StreamGroup, StreamId, StreamIdmp, StreamMeta, Value,
    restore_payload,
};
pub use lzf::LzfError;
pub use read::{RdbReader, ReadError, decode_all};
