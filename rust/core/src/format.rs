//! The on-disk dataset format (mirrored in `bertkit/data/format.py`; spec in `docs/FORMAT.md`).
//!
//! A dataset is a directory holding `manifest.json` and `shards/`. Every array is a version-1.0
//! `.npy` file (little-endian, C order) that `numpy.load(path, mmap_mode="r")` opens without
//! bertkit. A shard's files are written to temporary names and renamed into place, then a small
//! `shards/<name>.json` record is written the same way: it marks the shard complete for `--resume`.
//! `manifest.json` is written last, atomically; a directory without it is not a dataset.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const FORMAT_NAME: &str = "bertkit.dataset";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const SHARD_DIR: &str = "shards";

/// Element types we store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    #[serde(rename = "uint8")]
    U8,
    #[serde(rename = "uint16")]
    U16,
    #[serde(rename = "uint32")]
    U32,
    #[serde(rename = "uint64")]
    U64,
    #[serde(rename = "float16")]
    F16,
}

impl DType {
    pub fn descr(self) -> &'static str {
        match self {
            DType::U8 => "|u1",
            DType::U16 => "<u2",
            DType::U32 => "<u4",
            DType::U64 => "<u8",
            DType::F16 => "<f2",
        }
    }
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::U16 | DType::F16 => 2,
            DType::U32 => 4,
            DType::U64 => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
        }
    }
    fn from_descr(d: &str) -> Option<DType> {
        Some(match d {
            "|u1" | "<u1" => DType::U8,
            "<u2" => DType::U16,
            "<u4" => DType::U32,
            "<u8" => DType::U64,
            "<f2" => DType::F16,
            _ => return None,
        })
    }
    /// The token dtype for a vocabulary: uint16 when every id fits, else uint32.
    pub fn for_vocab(vocab_size: usize) -> DType {
        if vocab_size <= 65_536 {
            DType::U16
        } else {
            DType::U32
        }
    }
}

/// One array file of a shard, as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayFile {
    /// Path relative to the directory holding the manifest (may start with `../` after a merge).
    pub path: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// File size in bytes, header included.
    pub size: u64,
    /// xxh3-64 of the whole file, 16 lower-case hex digits.
    pub xxh3: String,
}

/// A shard: a group of arrays covering a contiguous range of documents or instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// `corpus`, `nsp`, `mlm` or `chunks`.
    pub kind: String,
    pub name: String,
    /// Documents (corpus, chunks) or instances (nsp, mlm) in this shard.
    pub rows: u64,
    /// Sentences (corpus shards; 0 otherwise).
    #[serde(default)]
    pub sentences: u64,
    /// Tokens stored in this shard.
    pub tokens: u64,
    /// Chunks (chunk shards; 0 otherwise).
    #[serde(default)]
    pub chunks: u64,
    /// After `merge`: added to `document_sources` to index the merged manifest's `inputs`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_offset: u64,
    pub arrays: BTreeMap<String, ArrayFile>,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    pub size: u64,
    pub xxh3: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub documents: u64,
    pub sentences: u64,
    pub tokens: u64,
    /// Instances per kind (`nsp`, `mlm`, `chunks`).
    #[serde(default)]
    pub instances: BTreeMap<String, u64>,
    /// What was dropped on the way, by reason (e.g. `empty_documents`, `invalid_utf8_lines`).
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// `corpus` for a tokenized corpus (with optional instance shards), `merged` after `merge`.
    pub kind: String,
    pub created_by: String,
    /// Tokenizer identity (see `tokenizer::TokenizerInfo`).
    pub tokenizer: serde_json::Value,
    /// `{"name": ..., "version": ...}`.
    pub splitter: serde_json::Value,
    /// The full prepare configuration.
    pub config: serde_json::Value,
    pub inputs: Vec<InputFile>,
    pub token_dtype: DType,
    pub totals: Totals,
    pub shards: Vec<Shard>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            if dir.is_dir() {
                return Err(Error::format(
                    dir,
                    "not a complete bertkit dataset: manifest.json is missing (an interrupted prepare? use --resume)",
                ));
            }
            return Err(Error::format(dir, "no such dataset directory"));
        }
        let text = fs::read_to_string(&path).at(&path)?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("invalid manifest: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(Error::format(&path, format!("unknown format {:?} (expected {FORMAT_NAME:?})", m.format)));
        }
        if m.version > FORMAT_VERSION {
            return Err(Error::format(
                &path,
                format!("format version {} is newer than this bertkit understands ({FORMAT_VERSION})", m.version),
            ));
        }
        Ok(m)
    }

    /// Write `manifest.json` atomically (temporary file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("manifest serializes");
        write_atomic(&dir.join(MANIFEST), text.as_bytes())
    }

    pub fn shards_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Shard> + 'a {
        self.shards.iter().filter(move |s| s.kind == kind)
    }
}

/// Write bytes to `path` atomically. On failure the temporary file is removed and the old content
/// (if any) is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Values that can be written to a `.npy` file.
pub trait NpyElement: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn write_le(data: &[Self], out: &mut Vec<u8>);
}

macro_rules! npy_int {
    ($t:ty, $d:expr) => {
        impl NpyElement for $t {
            const DTYPE: DType = $d;
            fn write_le(data: &[Self], out: &mut Vec<u8>) {
                out.reserve(data.len() * std::mem::size_of::<$t>());
                for v in data {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    };
}
npy_int!(u8, DType::U8);
npy_int!(u16, DType::U16);
npy_int!(u32, DType::U32);
npy_int!(u64, DType::U64);

/// The `.npy` version 1.0 header for an array, padded so the data starts at a multiple of 64.
pub fn npy_header(dtype: DType, shape: &[u64]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", dtype.descr(), shape_s);
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

/// Write a `.npy` file atomically (temp name, then rename) and return its manifest record.
/// `rel` is the path recorded in the manifest, relative to `root`.
pub fn write_npy_bytes(root: &Path, rel: &str, dtype: DType, shape: &[u64], data: &[u8]) -> Result<ArrayFile> {
    let path = root.join(rel);
    let header = npy_header(dtype, shape);
    let tmp = tmp_path(&path);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&header);
    hasher.update(data);
    let res = (|| -> std::io::Result<()> {
        let f = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(&header)?;
        w.write_all(data)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&path, e));
    }
    Ok(ArrayFile {
        path: rel.to_string(),
        dtype,
        shape: shape.to_vec(),
        size: (header.len() + data.len()) as u64,
        xxh3: format!("{:016x}", hasher.digest()),
    })
}

pub fn write_npy<T: NpyElement>(root: &Path, rel: &str, shape: &[u64], data: &[T]) -> Result<ArrayFile> {
    debug_assert_eq!(shape.iter().product::<u64>(), data.len() as u64);
    if cfg!(target_endian = "little") {
        // SAFETY: T is a plain unsigned integer (NpyElement is implemented for u8/u16/u32/u64 only),
        // so its bytes are its little-endian representation: write them without a copy.
        let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data)) };
        return write_npy_bytes(root, rel, T::DTYPE, shape, bytes);
    }
    let mut bytes = Vec::new();
    T::write_le(data, &mut bytes);
    write_npy_bytes(root, rel, T::DTYPE, shape, &bytes)
}

/// Write the concatenation of several token-id slices as one 1-D array in the dataset's token dtype
/// (one conversion pass, no intermediate concatenation).
pub fn write_tokens_parts(root: &Path, rel: &str, dtype: DType, parts: &[&[u32]]) -> Result<ArrayFile> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    match dtype {
        DType::U16 => {
            let mut v: Vec<u16> = Vec::with_capacity(n);
            for p in parts {
                v.extend(p.iter().map(|&x| x as u16));
            }
            write_npy(root, rel, &[n as u64], &v)
        }
        DType::U32 => write_npy(root, rel, &[n as u64], &parts.concat()),
        other => Err(Error::config(format!("token dtype {other:?} is not supported"))),
    }
}

/// Write token ids in the dataset's token dtype.
pub fn write_tokens(root: &Path, rel: &str, dtype: DType, shape: &[u64], ids: &[u32]) -> Result<ArrayFile> {
    match dtype {
        DType::U16 => {
            let v: Vec<u16> = ids.iter().map(|&x| x as u16).collect();
            write_npy(root, rel, shape, &v)
        }
        DType::U32 => write_npy(root, rel, shape, ids),
        other => Err(Error::config(format!("token dtype {other:?} is not supported"))),
    }
}

/// A memory-mapped `.npy` array.
pub struct NpyMap {
    pub path: PathBuf,
    pub dtype: DType,
    pub shape: Vec<u64>,
    map: Option<memmap2::Mmap>,
    offset: usize,
}

impl NpyMap {
    pub fn open(path: &Path) -> Result<NpyMap> {
        let mut f = File::open(path).at(path)?;
        let mut pre = [0u8; 10];
        f.read_exact(&mut pre).map_err(|_| Error::format(path, "truncated .npy file"))?;
        if &pre[..6] != b"\x93NUMPY" {
            return Err(Error::format(path, "not a .npy file (bad magic)"));
        }
        let (hlen, hstart) = match pre[6] {
            1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
            2 | 3 => {
                let mut b = [0u8; 2];
                f.read_exact(&mut b).map_err(|_| Error::format(path, "truncated .npy header"))?;
                (u32::from_le_bytes([pre[8], pre[9], b[0], b[1]]) as usize, 12)
            }
            v => return Err(Error::format(path, format!("unsupported .npy version {v}"))),
        };
        let mut header = vec![0u8; hlen];
        f.read_exact(&mut header).map_err(|_| Error::format(path, "truncated .npy header"))?;
        let header = String::from_utf8_lossy(&header).to_string();
        let descr = extract_between(&header, "'descr':", ",")
            .map(|s| s.trim().trim_matches('\'').to_string())
            .ok_or_else(|| Error::format(path, "npy header without descr"))?;
        let dtype = DType::from_descr(&descr)
            .ok_or_else(|| Error::format(path, format!("unsupported dtype {descr} in .npy header")))?;
        if header.contains("'fortran_order': True") {
            return Err(Error::format(path, "fortran-ordered arrays are not supported"));
        }
        let shape_s = extract_between(&header, "'shape': (", ")")
            .ok_or_else(|| Error::format(path, "npy header without shape"))?;
        let shape: Vec<u64> = shape_s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().map_err(|_| Error::format(path, "bad shape in .npy header")))
            .collect::<Result<_>>()?;
        let offset = hstart + hlen;
        let n: u64 = shape.iter().product();
        let need = offset as u64 + n * dtype.size() as u64;
        let len = f.metadata().at(path)?.len();
        if len < need {
            return Err(Error::format(path, format!("truncated array: {len} bytes, header says {need}")));
        }
        let map = if n == 0 {
            None
        } else {
            // SAFETY: the file is opened read-only; bertkit never writes a published shard in place.
            Some(unsafe { memmap2::Mmap::map(&f) }.at(path)?)
        };
        Ok(NpyMap { path: path.to_path_buf(), dtype, shape, map, offset })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product::<u64>() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[self.offset..self.offset + self.len() * self.dtype.size()],
            None => &[],
        }
    }

    fn typed<T>(&self, want: DType) -> Result<&[T]> {
        if self.dtype != want {
            return Err(Error::format(&self.path, format!("expected {}, found {}", want.name(), self.dtype.name())));
        }
        let b = self.bytes();
        if b.is_empty() {
            return Ok(&[]);
        }
        // npy data written by bertkit starts at a multiple of 64 and mmap is page aligned.
        let (pre, mid, post) = unsafe { b.align_to::<T>() };
        if !pre.is_empty() || !post.is_empty() {
            return Err(Error::format(&self.path, "array data is not aligned"));
        }
        Ok(mid)
    }

    pub fn as_u8(&self) -> Result<&[u8]> {
        self.typed(DType::U8)
    }
    pub fn as_u16(&self) -> Result<&[u16]> {
        self.typed(DType::U16)
    }
    pub fn as_u32(&self) -> Result<&[u32]> {
        self.typed(DType::U32)
    }
    pub fn as_u64(&self) -> Result<&[u64]> {
        self.typed(DType::U64)
    }
}

fn extract_between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let rest = &s[i..];
    let j = rest.find(end)?;
    Some(&rest[..j])
}

/// xxh3-64 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).at(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, format!("{:016x}", hasher.digest())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u16> = (0..1000).collect();
        let a = write_npy(dir.path(), "x.npy", &[1000], &data).unwrap();
        assert_eq!((a.size - 2000) % 64, 0);
        let m = NpyMap::open(&dir.path().join("x.npy")).unwrap();
        assert_eq!(m.as_u16().unwrap(), &data[..]);
        let (size, h) = hash_file(&dir.path().join("x.npy")).unwrap();
        assert_eq!((size, h), (a.size, a.xxh3));
        let two: Vec<u32> = (0..12).collect();
        write_npy(dir.path(), "y.npy", &[3, 4], &two).unwrap();
        let m = NpyMap::open(&dir.path().join("y.npy")).unwrap();
        assert_eq!(m.shape, vec![3, 4]);
        assert_eq!(m.as_u32().unwrap(), &two[..]);
        let empty: Vec<u64> = vec![];
        write_npy(dir.path(), "z.npy", &[0], &empty).unwrap();
        assert!(NpyMap::open(&dir.path().join("z.npy")).unwrap().as_u64().unwrap().is_empty());
    }

    #[test]
    fn truncated_npy_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u32> = (0..100).collect();
        write_npy(dir.path(), "x.npy", &[100], &data).unwrap();
        let p = dir.path().join("x.npy");
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let err = NpyMap::open(&p).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn missing_manifest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json is missing"), "{err}");
    }
}
