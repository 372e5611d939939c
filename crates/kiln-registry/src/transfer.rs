//! What a blob transfer reports as it goes, so a command can draw bars (bytes, rate, time
//! left) or print a line per finished blob, without the library printing anything.

use std::sync::Arc;

use kiln_oci::Digest;

/// One moment of a blob transfer.
#[derive(Debug)]
pub enum TransferEvent<'a> {
    /// `blobs` downloads of `bytes` in all are about to start (a total for time left).
    Planned {
        /// How many blobs.
        blobs: usize,
        /// Their declared sizes, summed.
        bytes: u64,
    },
    /// A transfer of `size` bytes begins with `done` of them already in place (a download
    /// resumed from a partial file, an upload resumed at an offset). Sent again when the
    /// transfer starts over, with the new `done`.
    Begin {
        /// The blob.
        digest: &'a Digest,
        /// Its declared size.
        size: u64,
        /// Bytes already transferred.
        done: u64,
        /// True for an upload, false for a download.
        upload: bool,
    },
    /// `bytes` more moved.
    Bytes {
        /// The blob.
        digest: &'a Digest,
        /// Bytes moved since the last event.
        bytes: u64,
    },
    /// The transfer finished; `line` says how ("pulled sha256:… (12.0 MiB)", "mounted …").
    /// A mounted blob ends without having begun.
    End {
        /// The blob.
        digest: &'a Digest,
        /// A line for plain output.
        line: &'a str,
    },
}

/// Receives transfer events; called from the transfer's task, so it must be quick.
pub type ProgressFn = Arc<dyn Fn(&TransferEvent<'_>) + Send + Sync>;

/// One blob's reporter: the sink (if any) and the digest, cheap to clone into a body stream.
#[derive(Clone)]
pub(crate) struct Meter {
    sink: Option<ProgressFn>,
    digest: Digest,
}

impl Meter {
    /// A meter for `digest` reporting to `sink`.
    pub(crate) fn new(sink: Option<ProgressFn>, digest: &Digest) -> Meter {
        Meter {
            sink,
            digest: digest.clone(),
        }
    }

    /// The transfer (re)starts with `done` of `size` bytes in place.
    pub(crate) fn begin(&self, size: u64, done: u64, upload: bool) {
        if let Some(s) = &self.sink {
            s(&TransferEvent::Begin {
                digest: &self.digest,
                size,
                done,
                upload,
            });
        }
    }

    /// `bytes` more moved.
    pub(crate) fn moved(&self, bytes: u64) {
        if let Some(s) = &self.sink {
            s(&TransferEvent::Bytes {
                digest: &self.digest,
                bytes,
            });
        }
    }

    /// The transfer finished, as `line` says.
    pub(crate) fn end(&self, line: &str) {
        if let Some(s) = &self.sink {
            s(&TransferEvent::End {
                digest: &self.digest,
                line,
            });
        }
    }
}
