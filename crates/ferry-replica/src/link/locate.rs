//! Where the source is: the [`Locate`] trait a [`LinkConfig`](super::LinkConfig)
//! may carry to follow a source that moves (a Sentinel-managed master, a
//! cluster shard whose master failed over).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::LinkError;

/// Tells the link where to connect. Asked before every connection
/// (the first one, every reconnect after a lost link, and after
/// [`LinkHandle::reconnect`](super::LinkHandle::reconnect)); the INFO poller
/// follows the address in use. An error is logged and retried with the
/// link's reconnect backoff (it never stops the link), so return
/// [`LinkError::Locate`] with a message naming what was tried.
pub trait Locate: Send + Sync {
    /// The address (`host:port`) to connect to now.
    fn locate(&self) -> Pin<Box<dyn Future<Output = Result<String, LinkError>> + Send + '_>>;
}

impl fmt::Debug for dyn Locate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Locate")
    }
}
