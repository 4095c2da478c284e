//! Sans-IO RESP2/RESP3 codec for ferry: bytes in, values out; values in, bytes out.
//!
//! * [`decode()`] / [`decode_bytes`] / [`Decoder`]: any reply or frame into a
//!   [`Value`] (`Ok(None)` = need more bytes).
//! * [`decode_command`] / [`split_command`] / [`Decoder::split_args`]: the
//!   replication-stream fast path, an array of bulk strings into a [`Command`]
//!   of zero-copy `Bytes` with its exact wire length (the replication offset
//!   increment); `split_args` holds the first arguments inline ([`Args`]).
//! * [`decode_all`] / [`decode_replies_up_to`]: every complete reply of a
//!   read buffer at once, the common write replies by their bytes.
//! * [`write_command`] / [`put_command`] / [`command_len`] / [`write_value`]:
//!   encoding.
//!
//! No I/O, no async runtime, no `unsafe`; no input can make the decoder panic
//! or allocate in proportion to an announced length. See [`decode`](mod@decode)
//! for the exact contract.

pub mod command;
pub mod decode;
pub mod encode;
pub mod error;
pub mod reply;
mod scan;
pub mod value;

pub use command::{Args, Command, InlineCommand, decode_command, split_command};
pub use decode::{
    DEFAULT_MAX_ARRAY_LEN, DEFAULT_MAX_BULK_LEN, DEFAULT_MAX_DEPTH, Decoder, decode, decode_bytes,
};
pub use encode::{
    command_len, put_command, put_command_sized, put_value, write_command, write_value,
};
pub use error::RespError;
pub use reply::{Reply, decode_all, decode_replies_up_to};
pub use value::Value;
