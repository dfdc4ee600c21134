//! GGUF files (llama.cpp's format) as a container: the header read with
//! candle's parser, typed metadata look-ups, and tensors dequantized to f32,
//! every failure an error naming the file and the key or tensor. What the
//! keys mean is for the readers above: the model in `model/gguf.rs`, the
//! tokenizer in `text/tokenizer.rs`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// True when `path` is a file that starts with GGUF's magic bytes.
pub fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}

/// An open GGUF file: its metadata and tensor table, tensors read on demand.
pub struct Gguf {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            Error::checkpoint(
                path,
                format!("not a readable GGUF file (truncated, or a tensor type this build cannot read?): {e}"),
            )
        })?;
        Ok(Gguf {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bad(&self, what: String) -> Error {
        Error::checkpoint(&self.path, what)
    }

    pub fn has(&self, key: &str) -> bool {
        self.content.metadata.contains_key(key)
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| self.bad(format!("metadata key {key} is missing")))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.get(key)?
            .to_string()
            .cloned()
            .map_err(|_| self.bad(format!("metadata key {key} is not a string")))
    }

    /// A non-negative integer of any width.
    pub fn uint(&self, key: &str) -> Result<u64> {
        let v = self.get(key)?;
        let n = match v {
            Value::U8(x) => Some(*x as u64),
            Value::U16(x) => Some(*x as u64),
            Value::U32(x) => Some(*x as u64),
            Value::U64(x) => Some(*x),
            Value::I8(x) => u64::try_from(*x).ok(),
            Value::I16(x) => u64::try_from(*x).ok(),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        };
        n.ok_or_else(|| {
            self.bad(format!(
                "metadata key {key} is not a non-negative integer ({v:?})"
            ))
        })
    }

    pub fn float(&self, key: &str) -> Result<f64> {
        match self.get(key)? {
            Value::F32(x) => Ok(*x as f64),
            Value::F64(x) => Ok(*x),
            _ => self.uint(key).map(|n| n as f64),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<bool> {
        self.get(key)?
            .to_bool()
            .map_err(|_| self.bad(format!("metadata key {key} is not a boolean")))
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.get(key)?
            .to_vec()
            .map_err(|_| self.bad(format!("metadata key {key} is not an array")))
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.to_string()
                    .cloned()
                    .map_err(|_| self.bad(format!("metadata key {key}[{i}] is not a string")))
            })
            .collect()
    }

    pub fn uints(&self, key: &str) -> Result<Vec<u64>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                match v {
                    Value::I32(x) => u64::try_from(*x).ok(),
                    Value::U32(x) => Some(*x as u64),
                    Value::I8(x) => u64::try_from(*x).ok(),
                    Value::U8(x) => Some(*x as u64),
                    _ => None,
                }
                .ok_or_else(|| self.bad(format!("metadata key {key}[{i}] is not an integer")))
            })
            .collect()
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(String::as_str)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Shape of a tensor, outermost dimension first (as candle and PyTorch
    /// order them; GGUF's header lists them the other way round).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    }

    /// A tensor dequantized to f32 on the CPU.
    pub fn tensor_f32(&mut self, name: &str) -> Result<Tensor> {
        let info =
            self.content.tensor_infos.get(name).ok_or_else(|| {
                Error::checkpoint(&self.path, format!("tensor {name} is missing"))
            })?;
        let dtype = info.ggml_dtype;
        let q = info
            .read(
                &mut self.reader,
                self.content.tensor_data_offset,
                &Device::Cpu,
            )
            .map_err(|e| {
                Error::checkpoint(
                    &self.path,
                    format!("tensor {name} ({dtype:?}) cannot be read (file cut short?): {e}"),
                )
            })?;
        q.dequantize(&Device::Cpu).map_err(|e| {
            Error::checkpoint(
                &self.path,
                format!("tensor {name}: cannot dequantize {dtype:?}: {e}"),
            )
        })
    }
}
