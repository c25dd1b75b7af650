//! A small, safe Python-pickle reader: enough of protocols 0–5 to read what
//! `torch.save` writes (dicts, `OrderedDict`, tuples, tensor rebuild calls and
//! storage persistent ids), without executing anything. Globals become
//! [`Value::Global`] and calls become [`Value::Call`]; the caller interprets the
//! few it knows (`torch._utils._rebuild_tensor_v2`, …).
//!
//! Why not a crate: `serde-pickle` refuses globals and persistent ids, which are
//! the whole point here, and the crates that accept them (candle's reader,
//! `repugnant-pickle`) come with a tensor library or are unmaintained. This is
//! ~300 lines with a fuzz-friendly contract: any byte string gives `Ok` or `Err`,
//! never a panic or unbounded allocation.
//!
//! Memo semantics: the memo keeps a copy of a value as it was when memoized, so an
//! object mutated after `PUT` and fetched again would appear as it was then. The
//! objects torch shares through the memo (storage ids, the rebuild function,
//! tuples) are immutable, so this does not matter for weight files.
//!
//! Budget: a hostile pickle can make a few hundred bytes expand without bound
//! (a list that contains its memoized self twice, forty times over, is 2^40
//! values). Every value built and every memo copy is charged against
//! [`MAX_VALUE_BYTES`]; past it, reading stops with an error that says so, long
//! before memory runs out.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` (REDUCE, NEWOBJ).
    Call {
        callable: Box<Value>,
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)` (BUILD).
    Build {
        object: Box<Value>,
        state: Box<Value>,
    },
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) | Value::List(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("pickle error at byte {offset}: {message}")]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

/// A stack entry: a value with its nesting depth (a leaf is 1), or a MARK.
enum Item {
    Value(Value, u32),
    Mark,
}

/// How deep values may nest. Real checkpoints nest a few levels (a state
/// dict's tensors: a call, a tuple, a persistent id); code that walks,
/// compares, clones or drops a value recurses, so a pickle nested a million
/// deep (2 MB of `]` and `a`) would overflow the stack of whatever reads it.
pub const MAX_DEPTH: u32 = 1000;

/// Bytes of values one pickle may build (memo copies included): far above
/// any real checkpoint's pickle (tens of megabytes for the largest), far below
/// the verifier's memory.
pub const MAX_VALUE_BYTES: usize = 256 << 20;

/// The memory a value takes itself, without what it holds (which was charged
/// when it was pushed).
fn shallow_weight(value: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match value {
            Value::Str(s) => s.len(),
            Value::Bytes(b) | Value::BigInt(b) => b.len(),
            Value::Global { module, name } => module.len() + name.len(),
            _ => 0,
        }
}

/// The memory a value takes, counted without recursion, stopping once it
/// passes `limit` (so weighing a bomb costs no more than the budget).
fn weigh(value: &Value, limit: usize) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    let mut total = 0;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        total += NODE;
        if total > limit {
            return total;
        }
        match v {
            Value::Str(s) => total += s.len(),
            Value::Bytes(b) | Value::BigInt(b) => total += b.len(),
            Value::Global { module, name } => total += module.len() + name.len(),
            Value::List(items) | Value::Tuple(items) | Value::Set(items) => pending.extend(items.iter()),
            Value::Dict(pairs) => pending.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            Value::Call { callable: a, args: b } | Value::Build { object: a, state: b } => {
                pending.push(a);
                pending.push(b)
            }
            Value::PersistentId(inner) => pending.push(inner),
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
        }
    }
    total
}

/// Reads one pickle starting at `data[*pos]`, leaving `pos` after its STOP.
pub fn read(data: &[u8], pos: &mut usize) -> Result<Value, PickleError> {
    let mut m = Machine {
        data,
        pos: *pos,
        start: *pos,
        stack: Vec::new(),
        memo: HashMap::new(),
        spent: 0,
        deepest: 0,
    };
    let result = loop {
        let at = m.pos;
        let op = match m.take(1) {
            Ok(b) => b[0],
            Err(e) => break Err(e),
        };
        m.deepest = 0;
        // Each opcode builds at most one node (payload bytes are bounded by the input).
        m.spent += std::mem::size_of::<Value>();
        match m.step(op, at) {
            Ok(Some(value)) => break Ok(value),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    *pos = m.pos;
    result
}

/// The pickle machine: its input, stack and memo, and what building values
/// has cost so far (see [`MAX_VALUE_BYTES`]).
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    start: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, (Value, u32)>,
    spent: usize,
    /// The deepest value this opcode took off the stack: what it builds
    /// nests one deeper.
    deepest: u32,
}

type Step = Result<Option<Value>, PickleError>;

impl Machine<'_> {
    /// One opcode at `at`; `Some` is the pickle's value, at STOP.
    fn step(&mut self, op: u8, at: usize) -> Step {
        match op {
            0x80 => self.take(1).map(|_| None), // PROTO
            0x95 => self.take(8).map(|_| None), // FRAME
            b'.' => match self.stack.pop() {
                Some(Item::Value(v, _)) => Ok(Some(v)),
                _ => Err(self.err(self.pos, "stack underflow".into())),
            },
            b'(' => {
                self.stack.push(Item::Mark);
                Ok(None)
            }
            b'N' | 0x88 | 0x89 | b'J' | b'K' | b'M' | 0x8a | 0x8b | b'I' | b'L' | b'G' | b'F' => self.number(op, at),
            b'X' | 0x8c | 0x8d | b'V' | b'T' | b'U' | b'S' | b'B' | b'C' | 0x8e | 0x96 => self.text(op, at),
            b']' | b')' | b'}' | 0x8f | b'l' | b't' | 0x91 | 0x85..=0x87 | b'd' => self.container(op),
            b'a' | b'e' | 0x90 | b's' | b'u' => self.grow(op, at),
            b'c' | 0x93 | b'R' | 0x81 | 0x92 | b'b' | b'Q' | b'P' => self.object(op, at),
            b'q' | b'r' | b'p' | 0x94 | b'h' | b'j' | b'g' | b'0' | b'1' | b'2' => self.memo_or_stack(op, at),
            other => Err(self.err(at, format!("unsupported opcode 0x{other:02x}"))),
        }
    }

    /// NONE, booleans, integers, floats.
    fn number(&mut self, op: u8, at: usize) -> Step {
        let value = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64),
            b'K' => Value::Int(self.u8()? as i64),
            b'M' => Value::Int(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    self.u8()? as usize
                } else {
                    self.u32()? as usize
                };
                long_from_le(self.take(n)?)
            }
            b'I' => match self.line()?.as_str() {
                "00" => Value::Bool(false),
                "01" => Value::Bool(true),
                s => Value::Int(s.parse().map_err(|_| self.err(at, format!("bad INT {s:?}")))?),
            },
            b'L' => {
                let s = self.line()?;
                let s = s.trim_end_matches('L');
                Value::Int(s.parse().map_err(|_| self.err(at, format!("bad LONG {s:?}")))?)
            }
            b'G' => Value::Float(f64::from_be_bytes(self.take(8)?.try_into().unwrap())),
            _ => {
                let s = self.line()?;
                Value::Float(s.parse().map_err(|_| self.err(at, format!("bad FLOAT {s:?}")))?)
            }
        };
        self.push(value)
    }

    /// Strings and bytes, by length or by line.
    fn text(&mut self, op: u8, at: usize) -> Step {
        let value = match op {
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.u32()? as usize,
                    0x8c => self.u8()? as usize,
                    _ => self.u64()? as usize,
                };
                let bytes = self.take(n)?.to_vec();
                Value::Str(String::from_utf8(bytes).map_err(|_| self.err(at, "invalid UTF-8".into()))?)
            }
            b'V' => Value::Str(self.line()?),
            b'T' | b'U' => {
                let n = if op == b'T' {
                    self.u32()? as usize
                } else {
                    self.u8()? as usize
                };
                Value::Str(String::from_utf8_lossy(self.take(n)?).into_owned())
            }
            b'S' => Value::Str(self.line()?.trim_matches(['\'', '"']).to_string()),
            _ => {
                let n = match op {
                    b'B' => self.u32()? as usize,
                    b'C' => self.u8()? as usize,
                    _ => self.u64()? as usize,
                };
                Value::Bytes(self.take(n)?.to_vec())
            }
        };
        self.push(value)
    }

    /// Empty containers, and containers of what is above the MARK (or the
    /// top one to three values, for TUPLE1..3).
    fn container(&mut self, op: u8) -> Step {
        let value = match op {
            b']' => Value::List(Vec::new()),
            b')' => Value::Tuple(Vec::new()),
            b'}' => Value::Dict(Vec::new()),
            0x8f => Value::Set(Vec::new()),
            b'l' => Value::List(self.pop_mark()?),
            b't' => Value::Tuple(self.pop_mark()?),
            0x91 => Value::Set(self.pop_mark()?),
            b'd' => Value::Dict(pairs(self.pop_mark()?)),
            _ => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                Value::Tuple(items)
            }
        };
        self.push(value)
    }

    /// APPEND(S), ADDITEMS, SETITEM(S): what is popped goes into the value on top.
    fn grow(&mut self, op: u8, at: usize) -> Step {
        match op {
            b'a' => {
                let v = self.pop()?;
                match self.top()? {
                    Value::List(l) => l.push(v),
                    _ => return Err(self.err(at, "APPEND to a non-list".into())),
                }
            }
            b'e' => {
                let items = self.pop_mark()?;
                match self.top()? {
                    Value::List(l) => l.extend(items),
                    _ => return Err(self.err(at, "APPENDS to a non-list".into())),
                }
            }
            0x90 => {
                let items = self.pop_mark()?;
                match self.top()? {
                    Value::Set(s) => s.extend(items),
                    _ => return Err(self.err(at, "ADDITEMS to a non-set".into())),
                }
            }
            b's' => {
                let (v, k) = (self.pop()?, self.pop()?);
                set_items(self.top()?, vec![(k, v)]).map_err(|m| self.err(at, m))?;
            }
            _ => {
                let items = self.pop_mark()?;
                set_items(self.top()?, pairs(items)).map_err(|m| self.err(at, m))?;
            }
        }
        self.grew_top()?;
        Ok(None)
    }

    /// GLOBAL, STACK_GLOBAL, REDUCE, NEWOBJ(_EX), BUILD, persistent ids:
    /// recorded as values, never called.
    fn object(&mut self, op: u8, at: usize) -> Step {
        let value = match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                Value::Global { module, name }
            }
            0x93 => match (self.pop()?, self.pop()?) {
                (Value::Str(name), Value::Str(module)) => Value::Global { module, name },
                _ => return Err(self.err(at, "STACK_GLOBAL needs two strings".into())),
            },
            b'R' | 0x81 | 0x92 => {
                if op == 0x92 {
                    let _kwargs = self.pop()?;
                }
                let args = self.pop()?;
                let callable = self.pop()?;
                Value::Call {
                    callable: Box::new(callable),
                    args: Box::new(args),
                }
            }
            b'b' => {
                let state = self.pop()?;
                let object = self.pop()?;
                Value::Build {
                    object: Box::new(object),
                    state: Box::new(state),
                }
            }
            b'Q' => Value::PersistentId(Box::new(self.pop()?)),
            _ => Value::PersistentId(Box::new(Value::Str(self.line()?))),
        };
        self.push(value)
    }

    /// The memo (PUT, GET and their forms) and the stack (POP, POP_MARK, DUP).
    fn memo_or_stack(&mut self, op: u8, at: usize) -> Step {
        match op {
            b'q' | b'r' | b'p' | 0x94 => {
                let k = match op {
                    b'q' => self.u8()? as u32,
                    b'r' => self.u32()?,
                    b'p' => self.line()?.parse().map_err(|_| self.err(at, "bad PUT".into()))?,
                    _ => self.memo.len() as u32,
                };
                self.memo_put(k, at)?
            }
            b'h' | b'j' | b'g' => {
                let k = match op {
                    b'h' => self.u8()? as u32,
                    b'j' => self.u32()?,
                    _ => self
                        .line()?
                        .parse::<u32>()
                        .map_err(|_| self.err(at, "bad GET".into()))?,
                };
                self.memo_get(k)?
            }
            b'0' => {
                self.stack.pop();
            }
            b'1' => {
                self.pop_mark()?;
            }
            _ => {
                let (v, d) = match self.stack.last() {
                    Some(Item::Value(v, d)) => (v.clone(), *d),
                    _ => return Err(self.err(at, "DUP of nothing".into())),
                };
                self.charge(&v)?;
                self.stack.push(Item::Value(v, d));
            }
        }
        Ok(None)
    }

    fn err(&self, at: usize, message: String) -> PickleError {
        PickleError {
            offset: at - self.start,
            message,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        if self.data.len().saturating_sub(self.pos) < n {
            return Err(self.err(self.pos, format!("truncated: wanted {n} more bytes")));
        }
        self.pos += n;
        Ok(&self.data[self.pos - n..self.pos])
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err(self.pos, "truncated: no newline".into()));
        };
        let s = String::from_utf8_lossy(&rest[..nl]).into_owned();
        self.pos += nl + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Item::Value(v, d)) => {
                self.deepest = self.deepest.max(d);
                Ok(v)
            }
            _ => Err(self.err(self.pos, "stack underflow".into())),
        }
    }

    fn too_deep(&self, depth: u32) -> Result<(), PickleError> {
        if depth > MAX_DEPTH {
            return Err(self.err(
                self.pos,
                format!("its values nest more than {MAX_DEPTH} deep (no checkpoint does; a crafted file does)"),
            ));
        }
        Ok(())
    }

    fn over_budget(&self) -> Result<(), PickleError> {
        if self.spent > MAX_VALUE_BYTES {
            return Err(self.err(
                self.pos,
                format!(
                    "it builds more than {} MiB of values (a pickle that expands itself, such as a memo bomb)",
                    MAX_VALUE_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// A copy of `value` (memo, DUP) is charged in full.
    fn charge(&mut self, value: &Value) -> Result<(), PickleError> {
        self.spent = self.spent.saturating_add(weigh(value, MAX_VALUE_BYTES));
        self.over_budget()
    }

    /// Every value pushed is charged too (a node, and its own bytes), not
    /// only memo copies: a pickle of ten million `None`s is 10 MB of input
    /// and would be hundreds of MB of values.
    fn push(&mut self, value: Value) -> Step {
        self.too_deep(self.deepest + 1)?;
        self.spent = self.spent.saturating_add(shallow_weight(&value));
        self.over_budget()?;
        self.stack.push(Item::Value(value, self.deepest + 1));
        Ok(None)
    }

    /// After an opcode added to the value on top of the stack.
    fn grew_top(&mut self) -> Result<(), PickleError> {
        self.too_deep(self.deepest + 1)?;
        let deepest = self.deepest;
        if let Some(Item::Value(_, d)) = self.stack.last_mut() {
            *d = (*d).max(deepest + 1);
        }
        Ok(())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(m) = self.stack.iter().rposition(|i| matches!(i, Item::Mark)) else {
            return Err(self.err(self.pos, "no MARK on the stack".into()));
        };
        let mut deepest = self.deepest;
        let items = (self.stack.drain(m..).skip(1))
            .map(|i| match i {
                Item::Value(v, d) => {
                    deepest = deepest.max(d);
                    v
                }
                Item::Mark => Value::None,
            })
            .collect();
        self.deepest = deepest;
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let pos = self.pos;
        match self.stack.last_mut() {
            Some(Item::Value(v, _)) => Ok(v),
            _ => Err(PickleError {
                offset: pos - self.start,
                message: "stack underflow".into(),
            }),
        }
    }

    fn memo_put(&mut self, k: u32, at: usize) -> Result<(), PickleError> {
        let (v, d) = match self.stack.last() {
            Some(Item::Value(v, d)) => (v.clone(), *d),
            _ => return Err(self.err(at, "memo put of nothing".into())),
        };
        self.charge(&v)?;
        self.memo.insert(k, (v, d));
        Ok(())
    }

    fn memo_get(&mut self, k: u32) -> Result<(), PickleError> {
        let Some((v, d)) = self.memo.get(&k).cloned() else {
            return Err(self.err(self.pos, format!("memo key {k} missing")));
        };
        self.charge(&v)?;
        self.stack.push(Item::Value(v, d));
        Ok(())
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// SETITEM(S) on a dict, or on an `OrderedDict()` call (how torch pickles one).
fn set_items(target: &mut Value, items: Vec<(Value, Value)>) -> Result<(), String> {
    match target {
        Value::Dict(d) => {
            d.extend(items);
            Ok(())
        }
        Value::Call { callable, args } if matches!(**callable, Value::Global { .. }) => {
            // Represent `OrderedDict()` + items as the call with a dict payload in args.
            match &mut **args {
                Value::Dict(d) => d.extend(items),
                other => {
                    let _ = std::mem::replace(other, Value::Dict(items));
                }
            }
            Ok(())
        }
        _ => Err("SETITEMS on something that is not a dict".into()),
    }
}

fn long_from_le(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(buf));
    }
    Value::BigInt(bytes.to_vec())
}

/// Unwraps `OrderedDict()`-with-items (see [`set_items`]) and BUILD wrappers to
/// the key/value pairs, if `v` is a mapping.
pub fn as_mapping(v: &Value) -> Option<&[(Value, Value)]> {
    match v {
        Value::Dict(d) => Some(d),
        Value::Call { callable, args } if callable.is_global("collections", "OrderedDict") => match &**args {
            Value::Dict(d) => Some(d),
            Value::Tuple(t) if t.is_empty() => Some(&[]),
            _ => None,
        },
        Value::Build { object, .. } => as_mapping(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list holding its memoized self twice, doubled forty times: 662 bytes
    /// of pickle that would be 2^40 values. It must stop at the budget, fast.
    #[test]
    fn values_without_memo_copies_are_charged_too() {
        // PROTO 2, then 12 million NONEs and STOP: 12 MB of input, each a
        // value on the stack.
        let mut data = vec![0x80, 2];
        data.extend(std::iter::repeat_n(b'N', 12_000_000));
        data.push(b'.');
        let e = read(&data, &mut 0).unwrap_err();
        assert!(e.message.contains("MiB of values"), "{e:?}");
    }

    #[test]
    fn a_memo_bomb_stops_at_the_budget() {
        let mut bomb = vec![0x80, 2, b']', b'q', 0];
        for i in 0..40u8 {
            // MARK, GET i, GET i, LIST, PUT i+1
            bomb.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1]);
        }
        bomb.push(b'.');
        let started = std::time::Instant::now();
        let e = read(&bomb, &mut 0).unwrap_err();
        assert!(e.message.contains("more than 256 MiB of values"), "{e}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn reads_basic_pickle() {
        // pickle.dumps({"a": (1, 2.5, True), "b": [None, "x"]}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88\x87q\x02X\x01\x00\x00\x00bq\x03]q\x04(NX\x01\x00\x00\x00xq\x05eu.";
        let mut pos = 0;
        let v = read(data, &mut pos).unwrap();
        assert_eq!(pos, data.len());
        let map = as_mapping(&v).unwrap();
        assert_eq!(
            map[0].1,
            Value::Tuple(vec![Value::Int(1), Value::Float(2.5), Value::Bool(true)])
        );
        assert_eq!(map[1].1, Value::List(vec![Value::None, Value::Str("x".into())]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [
            &b""[..],
            b"\x80",
            b"\x80\x02}q",
            b"<html>",
            b"\x80\x02h\x05.",
            b"\x80\x02X\xff\xff\xff\xff",
        ] {
            let mut pos = 0;
            assert!(read(data, &mut pos).is_err(), "{data:?}");
        }
    }

    #[test]
    fn longs() {
        assert_eq!(long_from_le(&[0xff]), Value::Int(-1));
        assert_eq!(long_from_le(&[0x00, 0x01]), Value::Int(256));
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    /// `depth` lists, each inside the one before: `]` × depth, then `a` × (depth − 1).
    fn nested(depth: usize) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.push(b'.');
        p
    }

    #[test]
    fn a_pickle_nested_a_million_deep_is_refused_not_a_stack_overflow() {
        let e = read(&nested(1_000_000), &mut 0).unwrap_err();
        assert!(e.message.contains("nest more than 1000 deep"), "{e}");
    }

    #[test]
    fn nesting_up_to_the_limit_reads() {
        let mut value = read(&nested(MAX_DEPTH as usize), &mut 0).unwrap();
        let mut depth = 1;
        while let Value::List(mut items) = value {
            let Some(inner) = items.pop() else { break };
            value = inner;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(read(&nested(MAX_DEPTH as usize + 1), &mut 0).is_err());
    }

    #[test]
    fn memo_copies_keep_their_depth() {
        // 600 deep, memoised, then two copies appended into one list: 601,
        // and copies of that list nested again past the limit.
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', 600));
        p.extend(std::iter::repeat_n(b'a', 599));
        p.extend([b'q', 0]); // PUT 0
        for _ in 0..2 {
            // a list holding GET 0, memoised as the next key
            p.extend([b']', b'h', 0, b'a', b'q', 0]);
        }
        p.push(b'.');
        // Each round nests the memoised value one deeper: 602, well under.
        assert!(read(&p, &mut 0).is_ok());
        let mut deep = vec![0x80, 2];
        deep.extend(std::iter::repeat_n(b']', 600));
        deep.extend(std::iter::repeat_n(b'a', 599));
        deep.extend([b'q', 0]);
        for _ in 0..500 {
            deep.extend([b']', b'h', 0, b'a', b'q', 0]);
        }
        deep.push(b'.');
        let e = read(&deep, &mut 0).unwrap_err();
        assert!(e.message.contains("nest more than"), "{e}");
    }
}
