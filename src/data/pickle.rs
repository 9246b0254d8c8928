//! A safe reader for the deeplearning.net `mnist.pkl.gz`.
//!
//! That file is a Python pickle: a tuple `((train_x, train_y), (valid_x, valid_y), (test_x,
//! test_y))` of numpy arrays, `x` float32 `(n, 784)` holding `byte / 256`, `y` int64 `(n,)`.
//! A pickle is a program for a small stack machine that may import and call anything, so this
//! module runs its own tiny machine instead: it knows only the opcodes such files use and the
//! four numpy globals that rebuild an array, imports nothing and calls nothing. Every length is
//! checked against the bytes that remain before anything is allocated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use flate2::read::GzDecoder;

use super::checksum::sha256_hex;
use super::dataset::{digit_classes, Dataset, Split, SplitKind};
use super::error::{DataError, Result};
use super::idx::{is_gzip, read_file_bytes};

/// The largest expansion a deflate stream can achieve; bounds what a gzip file can hold.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Pixels per MNIST image.
const IMAGE_LEN: usize = 28 * 28;

/// The only callables a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    /// `numpy.core.multiarray._reconstruct` (or `numpy._core...`): makes an empty array.
    Reconstruct,
    /// `numpy.ndarray`: only as the first argument of `_reconstruct`.
    Ndarray,
    /// `numpy.dtype`: makes a dtype from its name.
    Dtype,
}

/// The element types an array may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F4,
    F8,
    I8,
    I4,
    U1,
}

impl Elem {
    fn from_name(name: &str) -> Option<Elem> {
        match name {
            "f4" => Some(Elem::F4),
            "f8" => Some(Elem::F8),
            "i8" => Some(Elem::I8),
            "i4" => Some(Elem::I4),
            "u1" => Some(Elem::U1),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Elem::F4 | Elem::I4 => 4,
            Elem::F8 | Elem::I8 => 8,
            Elem::U1 => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Elem::F4 => "f4",
            Elem::F8 => "f8",
            Elem::I8 => "i8",
            Elem::I4 => "i4",
            Elem::U1 => "u1",
        }
    }
}

/// A `numpy.dtype` object; `BUILD` sets its byte order.
#[derive(Debug, Clone, Copy)]
struct DtypeObj {
    elem: Elem,
    /// The byte-order character once built: `<` or `|`.
    order: Option<u8>,
}

/// A numpy array: empty after `_reconstruct`, filled by `BUILD`.
#[derive(Debug, Clone)]
struct ArrayObj {
    shape: Vec<usize>,
    elem: Elem,
    /// The raw little-endian element bytes, as a range of the pickle.
    data: Range<usize>,
    built: bool,
}

/// A value on the machine's stack. Strings and bytes are ranges of the pickle itself.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A unicode string (checked UTF-8).
    Text(Range<usize>),
    /// A byte string (Python 2 `str` or Python 3 `bytes`).
    Bytes(Range<usize>),
    Tuple(Rc<Vec<Value>>),
    Global(Global),
    Dtype(Rc<RefCell<DtypeObj>>),
    Array(Rc<RefCell<ArrayObj>>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Text(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::Global(_) => "global",
            Value::Dtype(_) => "dtype",
            Value::Array(_) => "ndarray",
        }
    }
}

/// The name of a pickle opcode, for error messages.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "not a pickle opcode",
    }
}

/// The pickle machine: a byte cursor, a stack, the marks and the memo.
struct Machine<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being run, for error messages.
    op_pos: usize,
    op: u8,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn new(path: &'a Path, data: &'a [u8]) -> Machine<'a> {
        Machine { path, data, pos: 0, op_pos: 0, op: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }
    }

    fn fail(&self, message: impl std::fmt::Display) -> DataError {
        DataError::format(
            self.path,
            format!("pickle opcode {} at byte {}: {message}", opcode_name(self.op), self.op_pos),
        )
    }

    /// Takes `n` bytes, checking first that the pickle holds them.
    fn take(&mut self, n: u64) -> Result<Range<usize>> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(self.fail(format!("truncated: needs {n} more bytes, the pickle holds {left}")));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(start..self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let r = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[r]);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    /// A newline-terminated line (for `GLOBAL`), without the newline.
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.fail("truncated: no newline after the global's name"));
        };
        let text = std::str::from_utf8(&rest[..end]).map_err(|_| self.fail("the global's name is not UTF-8"))?;
        self.pos += end + 1;
        Ok(text.to_string())
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.fail("stack underflow"));
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(self.fail("stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.fail("no MARK to pop to"));
        };
        Ok(self.stack.split_off(mark))
    }

    fn top(&self) -> Result<&Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.fail("stack underflow"));
        }
        Ok(self.stack.last().expect("checked above"))
    }

    fn text(&self, v: &Value) -> Option<&'a str> {
        match v {
            Value::Text(r) | Value::Bytes(r) => std::str::from_utf8(&self.data[r.clone()]).ok(),
            _ => None,
        }
    }

    fn push_bytes(&mut self, len: u64, unicode: bool) -> Result<()> {
        let r = self.take(len)?;
        if unicode {
            if std::str::from_utf8(&self.data[r.clone()]).is_err() {
                return Err(self.fail("the string is not valid UTF-8"));
            }
            self.stack.push(Value::Text(r));
        } else {
            self.stack.push(Value::Bytes(r));
        }
        Ok(())
    }

    /// Resolves an import: only the numpy array globals are known; anything else stops the load.
    fn global(&self, module: &str, name: &str) -> Result<Value> {
        let g = match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::Reconstruct,
            ("numpy", "ndarray") => Global::Ndarray,
            ("numpy", "dtype") => Global::Dtype,
            _ => {
                return Err(self.fail(format!(
                    "the pickle imports `{module}.{name}`, which is not a numpy array global; \
                     refusing to load it (nothing was imported or executed)"
                )))
            }
        };
        Ok(Value::Global(g))
    }

    fn memo_get(&self, key: u32) -> Result<Value> {
        self.memo.get(&key).cloned().ok_or_else(|| self.fail(format!("memo key {key} was never stored")))
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    /// `REDUCE`: calls one of the allowed globals, without running any Python.
    fn reduce(&mut self) -> Result<()> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let Value::Tuple(args) = args else {
            return Err(self.fail(format!("REDUCE arguments are a {}, not a tuple", args.kind())));
        };
        match callable {
            Value::Global(Global::Reconstruct) => {
                if !matches!(args.first(), Some(Value::Global(Global::Ndarray))) {
                    return Err(self.fail("_reconstruct is only allowed to make a numpy.ndarray"));
                }
                let array = ArrayObj { shape: Vec::new(), elem: Elem::U1, data: 0..0, built: false };
                self.stack.push(Value::Array(Rc::new(RefCell::new(array))));
            }
            Value::Global(Global::Dtype) => {
                let name = args.first().and_then(|v| self.text(v)).unwrap_or("");
                let elem = Elem::from_name(name)
                    .ok_or_else(|| self.fail(format!("dtype `{name}` is not supported (only f4, f8, i8, i4, u1)")))?;
                self.stack.push(Value::Dtype(Rc::new(RefCell::new(DtypeObj { elem, order: None }))));
            }
            other => {
                let what = match other {
                    Value::Global(Global::Ndarray) => "numpy.ndarray".to_string(),
                    v => format!("a {}", v.kind()),
                };
                return Err(self.fail(format!("calling {what} is not supported")));
            }
        }
        Ok(())
    }

    /// `BUILD`: sets the state of a dtype (its byte order) or of an array (shape, dtype, bytes).
    fn build(&mut self) -> Result<()> {
        let state = self.pop()?;
        let target = self.top()?.clone();
        let Value::Tuple(state) = state else {
            return Err(self.fail(format!("BUILD state is a {}, not a tuple", state.kind())));
        };
        match target {
            Value::Dtype(d) => {
                // (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
                if state.len() < 8 || state[2..5].iter().any(|v| !matches!(v, Value::None)) {
                    return Err(self.fail("only plain dtypes are supported (no subarray, names or fields)"));
                }
                let order = self.text(&state[1]).unwrap_or("?");
                let mut d = d.borrow_mut();
                match order {
                    "<" => d.order = Some(b'<'),
                    "|" if d.elem.size() == 1 => d.order = Some(b'|'),
                    _ => {
                        return Err(self.fail(format!(
                            "dtype {} with byte order `{order}` is not supported: only little-endian",
                            d.elem.name()
                        )))
                    }
                }
            }
            Value::Array(a) => {
                // (version, shape, dtype, is_fortran, raw bytes)
                if state.len() != 5 {
                    return Err(self.fail(format!("array state has {} items, expected 5", state.len())));
                }
                let Value::Tuple(dims) = &state[1] else {
                    return Err(self.fail("array shape is not a tuple"));
                };
                let mut shape = Vec::with_capacity(dims.len());
                for d in dims.iter() {
                    match d {
                        Value::Int(n) if *n >= 0 => shape.push(*n as usize),
                        _ => return Err(self.fail("array shape holds something other than a size")),
                    }
                }
                let Value::Dtype(dtype) = &state[2] else {
                    return Err(self.fail(format!("array dtype is a {}", state[2].kind())));
                };
                let dtype = *dtype.borrow();
                if dtype.order.is_none() {
                    return Err(self.fail("array dtype has no byte order"));
                }
                let fortran = match &state[3] {
                    Value::Bool(b) => *b,
                    Value::Int(i) => *i != 0,
                    v => return Err(self.fail(format!("array order flag is a {}", v.kind()))),
                };
                if fortran && shape.len() > 1 {
                    return Err(self.fail("Fortran-ordered arrays are not supported"));
                }
                let Value::Bytes(data) = &state[4] else {
                    return Err(self.fail(format!("array data is a {}, not bytes", state[4].kind())));
                };
                let expected = shape
                    .iter()
                    .try_fold(dtype.elem.size(), |acc, &d| acc.checked_mul(d))
                    .ok_or_else(|| self.fail("array shape overflows"))?;
                if data.len() != expected {
                    return Err(self.fail(format!(
                        "array of shape {shape:?} and dtype {} needs {expected} bytes, the pickle gives {}",
                        dtype.elem.name(),
                        data.len()
                    )));
                }
                let mut a = a.borrow_mut();
                if a.built {
                    return Err(self.fail("array state set twice"));
                }
                *a = ArrayObj { shape, elem: dtype.elem, data: data.clone(), built: true };
            }
            other => return Err(self.fail(format!("BUILD on a {} is not supported", other.kind()))),
        }
        Ok(())
    }

    /// Runs the pickle up to `STOP` and returns its value.
    fn run(mut self) -> Result<Value> {
        loop {
            self.op_pos = self.pos;
            self.op = 0;
            let op = self.u8().map_err(|_| {
                DataError::format(self.path, format!("truncated: the pickle ends at byte {} without STOP", self.pos))
            })?;
            self.op = op;
            match op {
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.fail(format!("unknown pickle protocol {v}")));
                    }
                }
                0x95 => {
                    let n = u64::from_le_bytes(self.bytes()?);
                    let left = (self.data.len() - self.pos) as u64;
                    if n > left {
                        return Err(self.fail(format!("truncated: frame of {n} bytes, the pickle holds {left}")));
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.text(&module), self.text(&name)) else {
                        return Err(self.fail("STACK_GLOBAL needs two strings"));
                    };
                    let g = self.global(module, name)?;
                    self.stack.push(g);
                }
                0x8c | b'X' | b'U' | b'C' | b'T' | b'B' | 0x8e => self.string_op(op)?,
                b'(' => self.marks.push(self.stack.len()),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                0x85..=0x87 => {
                    let items = self.pop_n((op - 0x84) as usize)?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'J' | b'K' | b'M' | b'N' | 0x88 | 0x89 => self.scalar_op(op)?,
                b'q' | b'r' | 0x94 | b'h' | b'j' => self.memo_op(op)?,
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                b'.' => return self.pop(),
                _ => {
                    return Err(DataError::format(
                        self.path,
                        format!(
                            "unsupported pickle opcode 0x{op:02x} ({}) at byte {}: \
                             this reader only knows the opcodes of numpy array pickles",
                            opcode_name(op),
                            self.op_pos
                        ),
                    ))
                }
            }
        }
    }

    /// The string and bytes opcodes: a length (of the opcode's width), then that many bytes,
    /// pushed as text for the UTF-8 ones.
    fn string_op(&mut self, op: u8) -> Result<()> {
        let (n, text) = match op {
            0x8c => (self.u8()? as u64, true),
            b'X' => (self.u32()? as u64, true),
            b'U' | b'C' => (self.u8()? as u64, false),
            b'T' => {
                let n = i32::from_le_bytes(self.bytes()?);
                if n < 0 {
                    return Err(self.fail(format!("negative string length {n}")));
                }
                (n as u64, false)
            }
            b'B' => (self.u32()? as u64, false),
            _ => (u64::from_le_bytes(self.bytes()?), false),
        };
        self.push_bytes(n, text)
    }

    /// The opcodes that push one integer, `None` or a boolean.
    fn scalar_op(&mut self, op: u8) -> Result<()> {
        let v = match op {
            b'J' => Value::Int(i32::from_le_bytes(self.bytes()?) as i64),
            b'K' => Value::Int(self.u8()? as i64),
            b'M' => Value::Int(u16::from_le_bytes(self.bytes()?) as i64),
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            _ => Value::Bool(false),
        };
        self.stack.push(v);
        Ok(())
    }

    /// The memo opcodes: store the top of the stack under a key (given, or the next one), or
    /// push what a key holds.
    fn memo_op(&mut self, op: u8) -> Result<()> {
        match op {
            b'q' => {
                let k = self.u8()? as u32;
                self.memo_put(k)
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k)
            }
            0x94 => {
                let k = self.memo.len() as u32;
                self.memo_put(k)
            }
            b'h' => {
                let k = self.u8()? as u32;
                let v = self.memo_get(k)?;
                self.stack.push(v);
                Ok(())
            }
            _ => {
                let k = self.u32()?;
                let v = self.memo_get(k)?;
                self.stack.push(v);
                Ok(())
            }
        }
    }
}

/// Decompresses `bytes` if they are gzip; the output is bounded by what the file can hold.
fn decompress(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let budget = crate::budget::limit();
    let limit = (bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO).min(budget.saturating_add(1));
    let mut out = Vec::new();
    GzDecoder::new(&bytes[..])
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DataError::codec(path, "corrupt gzip data", e))?;
    if out.len() as u64 > budget {
        let budget = crate::budget::bytes(budget);
        return Err(DataError::format(path, format!("decompresses to more than the memory budget of {budget}")));
    }
    Ok(out)
}

/// One `(x, y)` part of the pickle, checked: images as bytes, labels as class indices.
fn part_to_split(path: &Path, data: &[u8], part: &Value, name: &str) -> Result<Split> {
    let fail = |m: String| DataError::format(path, format!("the {name} part: {m}"));
    let (x, y) = match part {
        Value::Tuple(items) if items.len() == 2 => match (&items[0], &items[1]) {
            (Value::Array(x), Value::Array(y)) => (x.borrow().clone(), y.borrow().clone()),
            _ => return Err(fail("expected a tuple of two numpy arrays".into())),
        },
        _ => return Err(fail("expected a tuple (images, labels)".into())),
    };
    if !x.built || !y.built {
        return Err(fail("an array was never given its data".into()));
    }
    if x.shape.len() != 2 || x.shape[1] != IMAGE_LEN {
        return Err(fail(format!("images have shape {:?}, expected (n, {IMAGE_LEN})", x.shape)));
    }
    let n = x.shape[0];
    if y.shape != [n] {
        return Err(fail(format!("labels have shape {:?}, expected ({n},) for {n} images", y.shape)));
    }
    let raw = &data[x.data.clone()];
    let values: Box<dyn Iterator<Item = f64>> = match x.elem {
        Elem::F4 => Box::new(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)),
        Elem::F8 => Box::new(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()))),
        e => return Err(fail(format!("images have dtype {}, expected f4 or f8", e.name()))),
    };
    let mut pixels = Vec::with_capacity(n * IMAGE_LEN);
    for (i, v) in values.enumerate() {
        let s = v * 256.0;
        if !(0.0..=255.0).contains(&s) || s.fract() != 0.0 {
            return Err(fail(format!(
                "pixel {} of image {} is {v}, which is not byte/256 for a byte 0..=255",
                i % IMAGE_LEN,
                i / IMAGE_LEN
            )));
        }
        pixels.push(s as u8);
    }
    let raw = &data[y.data.clone()];
    let labels: Vec<i64> = match y.elem {
        Elem::I8 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        Elem::I4 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
        Elem::U1 => raw.iter().map(|&b| b as i64).collect(),
        e => return Err(fail(format!("labels have dtype {}, expected an integer type", e.name()))),
    };
    let labels = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| match u8::try_from(l) {
            Ok(l) if l < 10 => Ok(l),
            _ => Err(fail(format!("label {i} is {l}, not a digit 0..=9"))),
        })
        .collect::<Result<Vec<u8>>>()?;
    Ok(Split { pixels, labels })
}

/// Parses the bytes of `mnist.pkl.gz` (gzip or plain pickle); `path` names the file in errors.
/// Train 50k and valid 10k become the official 60k train split, test 10k the test split.
pub fn parse_mnist_pkl(path: &Path, bytes: Vec<u8>) -> Result<Dataset> {
    let sha = sha256_hex(&bytes);
    let data = decompress(path, bytes)?;
    let value = Machine::new(path, &data).run()?;
    let parts = match &value {
        Value::Tuple(parts) if parts.len() == 3 => parts.clone(),
        v => {
            return Err(DataError::format(
                path,
                format!("the pickle holds a {}, expected a tuple of (train, valid, test)", v.kind()),
            ))
        }
    };
    let mut train = part_to_split(path, &data, &parts[0], "train")?;
    let valid = part_to_split(path, &data, &parts[1], "valid")?;
    let test = part_to_split(path, &data, &parts[2], "test")?;
    let (n_train, n_valid) = (train.len(), valid.len());
    train.extend(&valid);
    let mut ds = Dataset::new("mnist", digit_classes(), 28, 28);
    ds.provenance.description = format!(
        "mnist (deeplearning.net pickle: train {n_train} + valid {n_valid} joined as train, test {})",
        test.len()
    );
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ds.provenance.files.insert(file_name, sha);
    ds.splits.insert(SplitKind::Train, train);
    ds.splits.insert(SplitKind::Test, test);
    Ok(ds)
}

/// Reads the deeplearning.net `mnist.pkl.gz` (gzip or plain pickle) without running any Python.
pub fn read_mnist_pkl(path: &Path) -> Result<Dataset> {
    parse_mnist_pkl(path, read_file_bytes(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx;

    fn p() -> &'static Path {
        Path::new("m.pkl")
    }

    /// Writes a pickle in the exact layout of the deeplearning.net file (protocol 2).
    struct Writer(Vec<u8>);

    impl Writer {
        fn binstring(&mut self, s: &[u8]) {
            if s.len() < 256 {
                self.0.push(b'U');
                self.0.push(s.len() as u8);
            } else {
                self.0.push(b'T');
                self.0.extend_from_slice(&(s.len() as i32).to_le_bytes());
            }
            self.0.extend_from_slice(s);
        }

        fn int(&mut self, v: usize) {
            if v < 256 {
                self.0.extend_from_slice(&[b'K', v as u8]);
            } else {
                self.0.push(b'M');
                self.0.extend_from_slice(&(v as u16).to_le_bytes());
            }
        }

        fn array(&mut self, shape: &[usize], dtype: &str, order: &str, raw: &[u8]) {
            self.0.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
            self.0.extend_from_slice(&[b'K', 0, 0x85]);
            self.binstring(b"b");
            self.0.extend_from_slice(&[0x87, b'R', b'(', b'K', 1]);
            for &d in shape {
                self.int(d);
            }
            self.0.push(if shape.len() == 1 { 0x85 } else { 0x86 });
            self.0.extend_from_slice(b"cnumpy\ndtype\n");
            self.binstring(dtype.as_bytes());
            self.0.extend_from_slice(&[b'K', 0, b'K', 1, 0x87, b'R', b'(', b'K', 3]);
            self.binstring(order.as_bytes());
            self.0.extend_from_slice(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89");
            self.binstring(raw);
            self.0.extend_from_slice(b"tb");
        }

        fn part(&mut self, pixels: &[u8], labels: &[u8]) {
            let x: Vec<u8> = pixels.iter().flat_map(|&b| (b as f32 / 256.0).to_le_bytes()).collect();
            let y: Vec<u8> = labels.iter().flat_map(|&l| (l as i64).to_le_bytes()).collect();
            self.array(&[labels.len(), IMAGE_LEN], "f4", "<", &x);
            self.array(&[labels.len()], "i8", "<", &y);
            self.0.push(0x86);
        }
    }

    fn synthetic(counts: [usize; 3]) -> (Vec<u8>, Vec<Split>) {
        let mut w = Writer(vec![0x80, 2]);
        let mut splits = Vec::new();
        for (k, &n) in counts.iter().enumerate() {
            let pixels: Vec<u8> = (0..n * IMAGE_LEN).map(|i| ((i * 7 + k * 31) % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| ((i + k) % 10) as u8).collect();
            w.part(&pixels, &labels);
            splits.push(Split { pixels, labels });
        }
        w.0.extend_from_slice(&[0x87, b'.']);
        (w.0, splits)
    }

    #[test]
    fn synthetic_round_trip_plain_and_gz() {
        let (bytes, splits) = synthetic([3, 2, 4]);
        let gz = {
            use flate2::write::GzEncoder;
            use std::io::Write;
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap()
        };
        for input in [bytes.clone(), gz.clone()] {
            let ds = parse_mnist_pkl(p(), input.clone()).unwrap();
            let train = ds.split(SplitKind::Train).unwrap();
            let mut expected = splits[0].clone();
            expected.extend(&splits[1]);
            assert_eq!(train, &expected);
            assert_eq!(ds.split(SplitKind::Test).unwrap(), &splits[2]);
            assert!(ds.split(SplitKind::Val).is_none());
            assert_eq!(ds.classes, digit_classes());
            assert_eq!((ds.rows, ds.cols), (28, 28));
            assert!(ds.validate().is_ok());
            assert_eq!(ds.provenance.files["m.pkl"], sha256_hex(&input));
            assert!(ds.provenance.description.contains("train 3 + valid 2"), "{}", ds.provenance.description);
        }
    }

    /// `pickle.dumps(((x, y),), protocol=4)` from Python 3 with numpy 2: x float32 (2, 3), y int64 (2,).
    const NUMPY2_PROTOCOL4: &[u8] = b"\x80\x04\x95\xf7\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02K\x03\x86\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x18\x00\x00\x00\x00\x00\x00\x80;\x00\x00\x7f?\x00\x00\x00?\x00\x00\x00\x00\x00\x00\x00\x00\x94t\x94bh\x02h\x05K\x00\x85\x94h\x07\x87\x94R\x94(K\x01K\x02\x85\x94h\x0c\x8c\x02i8\x94\x89\x88\x87\x94R\x94(K\x03h\x10NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x10\x03\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x94t\x94b\x86\x94\x85\x94.";

    #[test]
    fn python3_protocol4_numpy_pickle() {
        let v = Machine::new(p(), NUMPY2_PROTOCOL4).run().unwrap();
        let Value::Tuple(outer) = v else { panic!("not a tuple") };
        let Value::Tuple(pair) = &outer[0] else { panic!("not a pair") };
        let (Value::Array(x), Value::Array(y)) = (&pair[0], &pair[1]) else { panic!("not arrays") };
        let (x, y) = (x.borrow(), y.borrow());
        assert_eq!((x.shape.clone(), x.elem), (vec![2, 3], Elem::F4));
        let xs: Vec<f32> = NUMPY2_PROTOCOL4[x.data.clone()]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(xs, [0.0, 1.0 / 256.0, 255.0 / 256.0, 0.5, 0.0, 0.0]);
        assert_eq!((y.shape.clone(), y.elem), (vec![2], Elem::I8));
        assert_eq!(&NUMPY2_PROTOCOL4[y.data.clone()], &[3, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn refuses_os_system_and_eval() {
        // A class whose __reduce__ returns (os.system, ('echo hi',)), pickled with protocol 2 and 4,
        // and one returning (eval, ('1+1',)).
        let cases: [(&[u8], &str); 3] = [
            (b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.", "posix.system"),
            (
                b"\x80\x04\x95\"\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x07echo hi\x94\x85\x94R\x94.",
                "posix.system",
            ),
            (b"\x80\x02c__builtin__\neval\nq\x00X\x03\x00\x00\x001+1q\x01\x85q\x02Rq\x03.", "__builtin__.eval"),
        ];
        for (bytes, name) in cases {
            let e = parse_mnist_pkl(p(), bytes.to_vec()).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("nothing was imported or executed"), "{e}");
            assert!(e.contains("m.pkl") && e.contains("at byte 2"), "{e}");
        }
    }

    #[test]
    fn unknown_opcode_named_with_offset() {
        // A protocol-2 pickle of a list: EMPTY_LIST at byte 2 is not accepted.
        let e = parse_mnist_pkl(p(), b"\x80\x02]q\x00.".to_vec()).unwrap_err().to_string();
        assert!(e.contains("0x5d (EMPTY_LIST) at byte 2"), "{e}");
        let e = parse_mnist_pkl(p(), b"\x80\x02N\xff.".to_vec()).unwrap_err().to_string();
        assert!(e.contains("0xff") && e.contains("at byte 3"), "{e}");
    }

    #[test]
    fn truncated_pickle() {
        let (bytes, _) = synthetic([1, 1, 1]);
        for cut in [bytes.len() - 1, bytes.len() / 2, 40, 1] {
            let e = parse_mnist_pkl(p(), bytes[..cut].to_vec()).unwrap_err().to_string();
            assert!(e.contains("m.pkl") && e.contains("truncated"), "cut at {cut}: {e}");
        }
        let e = parse_mnist_pkl(p(), Vec::new()).unwrap_err().to_string();
        assert!(e.contains("without STOP"), "{e}");
    }

    #[test]
    fn string_length_past_the_end() {
        // BINSTRING claiming 156,800,000 bytes in a tiny file: refused before allocating.
        let mut bytes = vec![0x80, 2, b'T'];
        bytes.extend_from_slice(&156_800_000i32.to_le_bytes());
        bytes.extend_from_slice(b"abc.");
        let e = parse_mnist_pkl(p(), bytes).unwrap_err().to_string();
        assert!(e.contains("BINSTRING at byte 2") && e.contains("needs 156800000 more bytes"), "{e}");
        let e = parse_mnist_pkl(p(), b"\x80\x02T\xff\xff\xff\xff.".to_vec()).unwrap_err().to_string();
        assert!(e.contains("negative string length"), "{e}");
    }

    #[test]
    fn pixel_not_a_byte_over_256() {
        let mut x: Vec<u8> = vec![0; IMAGE_LEN * 4];
        x[4 * 5..4 * 6].copy_from_slice(&0.3f32.to_le_bytes());
        let mut w = Writer(vec![0x80, 2]);
        w.array(&[1, IMAGE_LEN], "f4", "<", &x);
        w.array(&[1], "i8", "<", &[1, 0, 0, 0, 0, 0, 0, 0]);
        w.0.push(0x86);
        w.part(&[0; IMAGE_LEN], &[2]);
        w.part(&[0; IMAGE_LEN], &[3]);
        w.0.extend_from_slice(&[0x87, b'.']);
        let e = parse_mnist_pkl(p(), w.0).unwrap_err().to_string();
        assert!(e.contains("the train part") && e.contains("pixel 5 of image 0") && e.contains("0.3"), "{e}");
    }

    #[test]
    fn big_endian_dtype_refused() {
        let mut w = Writer(vec![0x80, 2]);
        w.array(&[1], "i8", ">", &[0; 8]);
        w.0.push(b'.');
        let e = parse_mnist_pkl(p(), w.0).unwrap_err().to_string();
        assert!(e.contains("byte order `>`") && e.contains("little-endian"), "{e}");
    }

    /// The real deeplearning.net file, converted to IDX, gives the official raw SHA-256s.
    #[test]
    fn real_file_matches_official_idx() {
        let path = crate::testdata::mnist_pkl();
        let ds = read_mnist_pkl(&path).unwrap();
        let train = ds.split(SplitKind::Train).unwrap();
        let test = ds.split(SplitKind::Test).unwrap();
        assert_eq!((train.len(), test.len()), (60000, 10000));
        let sums = [
            (
                idx::encode(&[60000, 28, 28], &train.pixels),
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            (idx::encode(&[60000], &train.labels), "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            (
                idx::encode(&[10000, 28, 28], &test.pixels),
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            (idx::encode(&[10000], &test.labels), "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ];
        for (bytes, expected) in sums {
            assert_eq!(sha256_hex(&bytes), expected);
        }
    }
}
