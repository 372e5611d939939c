//! Turning a layer blob into the tar stream it carries.
//!
//! Layers come from registries, OCI layouts and kiln's own writer, so the
//! same bytes may be labelled by an OCI media type, a Docker one, or nothing
//! at all (a tar on disk). Two entry points cover that:
//!
//! * [`open_layer_stream`] looks at the magic bytes. Use it when there is no
//!   media type, or when you want to be lenient about a wrong one (as
//!   containerd and Docker are).
//! * [`open_layer_stream_for_media_type`] trusts the descriptor and fails if
//!   the bytes disagree with it, which is what kiln wants for blobs whose
//!   digest it is about to record.
//!
//! Both return a plain `Read` of tar bytes, ready for
//! [`unpack_layer`](crate::unpack::unpack_layer). Truncated or corrupt
//! compressed input surfaces as an `io::Error` from `read`, never as a short
//! successful stream: gzip members end with a CRC and length, and a zstd frame
//! that stops early is reported by the decoder.

use std::fmt;
use std::io::{self, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;

/// The first bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first bytes of every zstd frame (RFC 8878), little-endian 0xFD2FB528.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Buffer for uncompressed input, so the tar reader's 512-byte reads do not
/// each become a syscall.
const PLAIN_BUFFER: usize = 64 * 1024;

/// How a layer blob is compressed.
///
/// Kept separate from the media type because the two can disagree (a mislabelled
/// blob), and because a tar on disk has no media type at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// An uncompressed tar.
    None,
    /// One or more concatenated gzip members.
    Gzip,
    /// One or more concatenated zstd frames.
    Zstd,
}

impl Compression {
    /// Guesses the compression from the first bytes of a blob.
    ///
    /// Anything that is neither gzip nor zstd is taken as a plain tar; the tar
    /// reader rejects it later if it is not one, with a better message than a
    /// guess could give here.
    pub fn sniff(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if prefix.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The compression a layer media type declares, or `None` if the media
    /// type is not a layer kiln can read.
    ///
    /// Accepts the OCI layer types (including the deprecated
    /// non-distributable ones, which old images still carry) and Docker's
    /// schema 2 layer types.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Opens a layer blob as a tar stream, detecting gzip, zstd or plain tar from
/// its first bytes.
///
/// This is the lenient path: registries in the wild serve blobs whose media
/// type does not match their bytes, and a layer read from disk has none.
///
/// # Errors
///
/// Only errors from reading the first bytes, or from setting up the zstd
/// decoder; decoding errors come later, from `read`.
pub fn open_layer_stream<R: Read + 'static>(r: R) -> io::Result<Box<dyn Read>> {
    let (prefix, r) = peek_prefix(r)?;
    decoder_for(Compression::sniff(&prefix), prefix, r)
}

/// Opens a layer blob as a tar stream, decoding it as its descriptor's media
/// type (OCI or Docker, as a string) says.
///
/// Being strict here catches a mislabelled blob before kiln records or
/// re-pushes it under the wrong type.
///
/// # Errors
///
/// `ErrorKind::Unsupported` for a media type that is not a layer,
/// `ErrorKind::InvalidData` when the blob's magic bytes contradict the media
/// type, and errors from reading the first bytes.
pub fn open_layer_stream_for_media_type<R: Read + 'static>(r: R, media_type: &str) -> io::Result<Box<dyn Read>> {
    let declared = Compression::from_media_type(media_type).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "media type {media_type} is not a layer kiln can unpack \
                 (expected an OCI or Docker tar, tar+gzip or tar+zstd layer)"
            ),
        )
    })?;
    let (prefix, r) = peek_prefix(r)?;
    let found = Compression::sniff(&prefix);
    if found != declared {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "layer declared as {media_type} ({declared}) but its content is {found}; \
                 the blob is mislabelled or corrupt"
            ),
        ));
    }
    decoder_for(declared, prefix, r)
}

/// Reads up to four bytes without losing them: they are handed back to be
/// chained in front of the rest of the stream.
fn peek_prefix<R: Read>(mut r: R) -> io::Result<(Vec<u8>, R)> {
    let mut buf = [0u8; ZSTD_MAGIC.len()];
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((buf[..filled].to_vec(), r))
}

fn decoder_for<R: Read + 'static>(compression: Compression, prefix: Vec<u8>, r: R) -> io::Result<Box<dyn Read>> {
    let whole = Cursor::new(prefix).chain(r);
    Ok(match compression {
        // MultiGzDecoder, not GzDecoder: concatenated members are one valid
        // gzip stream (kiln's parallel writer emits them), and GzDecoder would
        // silently stop after the first member.
        Compression::Gzip => Box::new(MultiGzDecoder::new(whole)),
        // The decoder keeps zstd's default window limit (128 MiB), which
        // bounds the memory a hostile frame header can make us allocate.
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        Compression::None => Box::new(BufReader::with_capacity(PLAIN_BUFFER, whole)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(mut r: Box<dyn Read>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn sniffs_each_format() {
        let data = b"hello layer".repeat(100);
        let gz = gzip(&data);
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(read_all(open_layer_stream(Cursor::new(gz)).unwrap()).unwrap(), data);
        assert_eq!(read_all(open_layer_stream(Cursor::new(zst)).unwrap()).unwrap(), data);
        assert_eq!(
            read_all(open_layer_stream(Cursor::new(data.clone())).unwrap()).unwrap(),
            data
        );
        // Shorter than any magic: still a (bogus) plain stream, no panic.
        assert_eq!(
            read_all(open_layer_stream(Cursor::new(vec![0x1f])).unwrap()).unwrap(),
            [0x1f]
        );
        assert!(read_all(open_layer_stream(io::empty()).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let mut two = gzip(b"first ");
        two.extend(gzip(b"second"));
        let out = read_all(open_layer_stream(Cursor::new(two)).unwrap()).unwrap();
        assert_eq!(out, b"first second");
    }

    #[test]
    fn truncated_gzip_and_zstd_are_errors() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gz = gzip(&data);
        let cut = gz[..gz.len() - 4].to_vec();
        assert!(read_all(open_layer_stream(Cursor::new(cut)).unwrap()).is_err());
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        let cut = zst[..zst.len() / 2].to_vec();
        assert!(read_all(open_layer_stream(Cursor::new(cut)).unwrap()).is_err());
    }

    #[test]
    fn media_types_are_checked_against_content() {
        let gz = gzip(b"x");
        let docker = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        assert_eq!(
            read_all(open_layer_stream_for_media_type(Cursor::new(gz.clone()), docker).unwrap()).unwrap(),
            b"x"
        );
        let err = open_layer_stream_for_media_type(Cursor::new(gz), "application/vnd.oci.image.layer.v1.tar+zstd")
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = open_layer_stream_for_media_type(io::empty(), "application/vnd.oci.image.config.v1+json")
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
    }
}
