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

pub mod build;
pub mod commands;
pub mod container;
pub mod crc64;
mod cursor;
mod decoder;
mod error;
pub mod intset;
mod item;
pub mod listpack;
pub mod lzf;
mod read;
mod stream;
mod types;
mod value;
pub mod ziplist;
pub mod zipmap;

pub use decoder::{DecodeOptions, Decoder};
pub use error::RdbError;
pub use item::{
    Flavor, HashField, Item, Key, KeyHeader, Kind, ModuleId, ModuleValue, PendingEntry, Stream,
    StreamConsumer, StreamEntry, StreamGroup, StreamId, StreamIdmp, StreamMeta, Value,
    restore_payload,
};
pub use read::{RdbReader, ReadError, decode_all};
