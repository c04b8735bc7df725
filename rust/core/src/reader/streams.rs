//! Byte sources for the text formats: decompression by file extension (`.gz`, `.zst`, `.bz2`,
//! `.xz`), and inputs that can only be read once (standard input as `-`, FIFOs, character devices)
//! whose size and xxh3 are computed while they are read instead of beforehand.

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The input spec that means standard input.
pub const STDIN: &str = "-";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    /// The compression named by a (lower-case) file name's last extension, and the name without it.
    pub fn from_name(name: &str) -> (Compression, &str) {
        for (suffix, c) in [
            (".gz", Compression::Gzip),
            (".zst", Compression::Zstd),
            (".zstd", Compression::Zstd),
            (".bz2", Compression::Bzip2),
            (".xz", Compression::Xz),
        ] {
            if let Some(inner) = name.strip_suffix(suffix) {
                return (c, inner);
            }
        }
        (Compression::None, name)
    }

    /// The compression whose magic number starts `head` (for streams, which have no file name).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.len() >= 10 && head.starts_with(b"BZh") && head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59] {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }

    /// Wrap `raw` in the decoder; every format reads concatenated members/frames/streams to the end.
    pub fn decoder(self, raw: Box<dyn Read + Send>, buf_size: usize) -> io::Result<Box<dyn Read + Send>> {
        if self == Compression::None {
            return Ok(raw);
        }
        let buffered = BufReader::with_capacity(buf_size, raw);
        Ok(match self {
            Compression::None => unreachable!(),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
            Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
        })
    }
}

/// Whether `path` is read as a stream: `-`, or anything that is not a regular file (a FIFO, a
/// character device such as `/dev/stdin` on a pipe, a socket).
pub fn is_stream(path: &Path) -> bool {
    path.as_os_str() == STDIN || std::fs::metadata(path).map(|m| !m.is_file()).unwrap_or(false)
}

/// Size and xxh3 of everything read through a [`HashingReader`] so far.
pub struct Digest {
    pub size: u64,
    hasher: xxhash_rust::xxh3::Xxh3,
}

impl Digest {
    pub fn new() -> Self {
        Digest { size: 0, hasher: xxhash_rust::xxh3::Xxh3::new() }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.hasher.update(bytes);
    }
    /// One record of a sequence (a document's text): hashed with its length, so that the
    /// boundaries count; `size` counts the text only.
    pub fn update_record(&mut self, bytes: &[u8]) {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }
    /// The same hex form as `format::hash_file`.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.hasher.digest())
    }
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

/// Hashes the raw bytes of a stream as they pass.
pub struct HashingReader<R> {
    pub inner: R,
    pub digest: Arc<Mutex<Digest>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.lock().expect("digest lock").update(&buf[..n]);
        Ok(n)
    }
}
