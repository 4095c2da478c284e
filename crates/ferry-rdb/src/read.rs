//! A blocking convenience wrapper: decode from any `std::io::Read`.

use std::io::Read;

use bytes::BytesMut;

use crate::decoder::{DecodeOptions, Decoder};
use crate::error::RdbError;
use crate::item::Item;

/// Error of [`RdbReader`]: the input could not be read, or not decoded.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the input failed.
    #[error("reading the RDB input failed: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid RDB.
    #[error(transparent)]
    Rdb(#[from] RdbError),
}

/// Iterates the items of an RDB read from `R`, 256 KiB at a time.
pub struct RdbReader<R> {
    input: R,
    buf: BytesMut,
    decoder: Decoder,
    eof: bool,
    finished: bool,
    /// Reject bytes after the checksum with [`RdbError::TrailingData`].
    /// Default false: servers load such files and ignore the tail, so the
    /// reader counts those bytes instead ([`RdbReader::trailing_bytes`]).
    pub reject_trailing: bool,
    trailing: u64,
}

const READ_SIZE: usize = 256 << 10;

impl<R: Read> RdbReader<R> {
    /// A reader with default options.
    pub fn new(input: R) -> Self {
        Self::with_options(input, DecodeOptions::default())
    }

    /// A reader with the given decoder options.
    pub fn with_options(input: R, opts: DecodeOptions) -> Self {
        RdbReader {
            input,
            buf: BytesMut::with_capacity(READ_SIZE),
            decoder: Decoder::new(opts),
            eof: false,
            finished: false,
            reject_trailing: false,
            trailing: 0,
        }
    }

    /// Bytes found after the checksum (known once the iterator ended);
    /// servers ignore them, callers should warn.
    pub fn trailing_bytes(&self) -> u64 {
        self.trailing
    }

    /// File offset consumed so far.
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }

    fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            if let Some(item) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(item));
            }
            if self.decoder.is_done() {
                loop {
                    if !self.buf.is_empty() && self.reject_trailing {
                        return Err(RdbError::TrailingData {
                            offset: self.decoder.offset(),
                        }
                        .into());
                    }
                    self.trailing += self.buf.len() as u64;
                    self.buf.clear();
                    if self.eof {
                        return Ok(None);
                    }
                    self.fill()?;
                }
            }
            if self.eof {
                self.decoder.finish(&self.buf)?;
                return Ok(None);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let n = loop {
            match self.input.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }
}

impl<R: Read> Iterator for RdbReader<R> {
    type Item = Result<Item, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_item() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

/// Decode a whole in-memory file (tests, small dumps).
pub fn decode_all(data: &[u8]) -> Result<Vec<Item>, ReadError> {
    RdbReader::new(data).collect()
}
