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

enum Item {
    Value(Value),
    Mark,
}

/// Bytes of values one pickle may build (memo copies included): far above
/// any real checkpoint's pickle (tens of megabytes for the largest), far below
/// the verifier's memory.
pub const MAX_VALUE_BYTES: usize = 256 << 20;

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
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let start = *pos;
    // What building and copying values has cost so far (see `MAX_VALUE_BYTES`).
    let mut spent: usize = 0;
    let err = |at: usize, message: String| PickleError {
        offset: at - start,
        message,
    };

    macro_rules! take {
        ($n:expr) => {{
            let n: usize = $n;
            if data.len().saturating_sub(*pos) < n {
                return Err(err(*pos, format!("truncated: wanted {n} more bytes")));
            }
            let s = &data[*pos..*pos + n];
            *pos += n;
            s
        }};
    }
    macro_rules! u8_ {
        () => {
            take!(1)[0]
        };
    }
    macro_rules! u16_ {
        () => {
            u16::from_le_bytes(take!(2).try_into().unwrap())
        };
    }
    macro_rules! u32_ {
        () => {
            u32::from_le_bytes(take!(4).try_into().unwrap())
        };
    }
    macro_rules! u64_ {
        () => {
            u64::from_le_bytes(take!(8).try_into().unwrap())
        };
    }
    macro_rules! line {
        () => {{
            let rest = &data[*pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return Err(err(*pos, "truncated: no newline".into()));
            };
            let s = String::from_utf8_lossy(&rest[..nl]).into_owned();
            *pos += nl + 1;
            s
        }};
    }
    macro_rules! pop {
        () => {
            match stack.pop() {
                Some(Item::Value(v)) => v,
                _ => return Err(err(*pos, "stack underflow".into())),
            }
        };
    }
    macro_rules! pop_mark {
        () => {{
            let Some(m) = stack.iter().rposition(|i| matches!(i, Item::Mark)) else {
                return Err(err(*pos, "no MARK on the stack".into()));
            };
            let items: Vec<Value> = stack
                .drain(m..)
                .skip(1)
                .map(|i| match i {
                    Item::Value(v) => v,
                    Item::Mark => Value::None,
                })
                .collect();
            items
        }};
    }
    macro_rules! top {
        () => {
            match stack.last_mut() {
                Some(Item::Value(v)) => v,
                _ => return Err(err(*pos, "stack underflow".into())),
            }
        };
    }
    macro_rules! charge {
        ($value:expr) => {{
            spent = spent.saturating_add(weigh($value, MAX_VALUE_BYTES));
            if spent > MAX_VALUE_BYTES {
                return Err(err(
                    *pos,
                    format!(
                        "it builds more than {} MiB of values (a pickle that expands itself, such as a memo bomb)",
                        MAX_VALUE_BYTES >> 20
                    ),
                ));
            }
        }};
    }
    macro_rules! memo_put {
        ($k:expr) => {{
            let v = match stack.last() {
                Some(Item::Value(v)) => v,
                _ => return Err(err(*pos, "memo put of nothing".into())),
            };
            charge!(v);
            let v = v.clone();
            memo.insert($k, v);
        }};
    }
    macro_rules! memo_get {
        ($k:expr) => {{
            let k = $k;
            match memo.get(&k) {
                Some(v) => {
                    charge!(v);
                    stack.push(Item::Value(v.clone()))
                }
                None => return Err(err(*pos, format!("memo key {k} missing"))),
            }
        }};
    }

    loop {
        let at = *pos;
        let op = u8_!();
        // Each opcode builds at most one node (payload bytes are bounded by the input).
        spent += std::mem::size_of::<Value>();
        match op {
            0x80 => {
                let _proto = u8_!();
            }
            0x95 => {
                let _frame_len = u64_!();
            }
            b'.' => {
                return Ok(pop!());
            }
            b'(' => stack.push(Item::Mark),
            b'N' => stack.push(Item::Value(Value::None)),
            0x88 => stack.push(Item::Value(Value::Bool(true))),
            0x89 => stack.push(Item::Value(Value::Bool(false))),
            b'J' => stack.push(Item::Value(Value::Int(
                i32::from_le_bytes(take!(4).try_into().unwrap()) as i64,
            ))),
            b'K' => stack.push(Item::Value(Value::Int(u8_!() as i64))),
            b'M' => stack.push(Item::Value(Value::Int(u16_!() as i64))),
            0x8a | 0x8b => {
                let n = if op == 0x8a { u8_!() as usize } else { u32_!() as usize };
                let bytes = take!(n);
                stack.push(Item::Value(long_from_le(bytes)));
            }
            b'I' => {
                let s = line!();
                stack.push(Item::Value(match s.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.parse().map_err(|_| err(at, format!("bad INT {s:?}")))?),
                }));
            }
            b'L' => {
                let s = line!();
                let s = s.trim_end_matches('L');
                stack.push(Item::Value(Value::Int(
                    s.parse().map_err(|_| err(at, format!("bad LONG {s:?}")))?,
                )));
            }
            b'G' => stack.push(Item::Value(Value::Float(f64::from_be_bytes(
                take!(8).try_into().unwrap(),
            )))),
            b'F' => {
                let s = line!();
                stack.push(Item::Value(Value::Float(
                    s.parse().map_err(|_| err(at, format!("bad FLOAT {s:?}")))?,
                )));
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => u32_!() as usize,
                    0x8c => u8_!() as usize,
                    _ => u64_!() as usize,
                };
                let s = String::from_utf8(take!(n).to_vec()).map_err(|_| err(at, "invalid UTF-8".into()))?;
                stack.push(Item::Value(Value::Str(s)));
            }
            b'V' => {
                let s = line!();
                stack.push(Item::Value(Value::Str(s)));
            }
            b'T' | b'U' => {
                let n = if op == b'T' { u32_!() as usize } else { u8_!() as usize };
                stack.push(Item::Value(Value::Str(String::from_utf8_lossy(take!(n)).into_owned())));
            }
            b'S' => {
                let s = line!();
                stack.push(Item::Value(Value::Str(s.trim_matches(['\'', '"']).to_string())));
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => u32_!() as usize,
                    b'C' => u8_!() as usize,
                    _ => u64_!() as usize,
                };
                stack.push(Item::Value(Value::Bytes(take!(n).to_vec())));
            }
            b']' => stack.push(Item::Value(Value::List(Vec::new()))),
            b')' => stack.push(Item::Value(Value::Tuple(Vec::new()))),
            b'}' => stack.push(Item::Value(Value::Dict(Vec::new()))),
            0x8f => stack.push(Item::Value(Value::Set(Vec::new()))),
            b'l' => {
                let items = pop_mark!();
                stack.push(Item::Value(Value::List(items)));
            }
            b't' => {
                let items = pop_mark!();
                stack.push(Item::Value(Value::Tuple(items)));
            }
            0x91 => {
                let items = pop_mark!();
                stack.push(Item::Value(Value::Set(items)));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop!());
                }
                items.reverse();
                stack.push(Item::Value(Value::Tuple(items)));
            }
            b'd' => {
                let items = pop_mark!();
                stack.push(Item::Value(Value::Dict(pairs(items))));
            }
            b'a' => {
                let v = pop!();
                match top!() {
                    Value::List(l) => l.push(v),
                    _ => return Err(err(at, "APPEND to a non-list".into())),
                }
            }
            b'e' => {
                let items = pop_mark!();
                match top!() {
                    Value::List(l) => l.extend(items),
                    _ => return Err(err(at, "APPENDS to a non-list".into())),
                }
            }
            0x90 => {
                let items = pop_mark!();
                match top!() {
                    Value::Set(s) => s.extend(items),
                    _ => return Err(err(at, "ADDITEMS to a non-set".into())),
                }
            }
            b's' => {
                let v = pop!();
                let k = pop!();
                set_items(top!(), vec![(k, v)]).map_err(|m| err(at, m))?;
            }
            b'u' => {
                let items = pop_mark!();
                set_items(top!(), pairs(items)).map_err(|m| err(at, m))?;
            }
            b'c' => {
                let module = line!();
                let name = line!();
                stack.push(Item::Value(Value::Global { module, name }));
            }
            0x93 => {
                let name = pop!();
                let module = pop!();
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => stack.push(Item::Value(Value::Global { module, name })),
                    _ => return Err(err(at, "STACK_GLOBAL needs two strings".into())),
                }
            }
            b'R' | 0x81 => {
                let args = pop!();
                let callable = pop!();
                stack.push(Item::Value(Value::Call {
                    callable: Box::new(callable),
                    args: Box::new(args),
                }));
            }
            0x92 => {
                let _kwargs = pop!();
                let args = pop!();
                let callable = pop!();
                stack.push(Item::Value(Value::Call {
                    callable: Box::new(callable),
                    args: Box::new(args),
                }));
            }
            b'b' => {
                let state = pop!();
                let object = pop!();
                stack.push(Item::Value(Value::Build {
                    object: Box::new(object),
                    state: Box::new(state),
                }));
            }
            b'Q' => {
                let pid = pop!();
                stack.push(Item::Value(Value::PersistentId(Box::new(pid))));
            }
            b'P' => {
                let pid = line!();
                stack.push(Item::Value(Value::PersistentId(Box::new(Value::Str(pid)))));
            }
            b'q' => memo_put!(u8_!() as u32),
            b'r' => memo_put!(u32_!()),
            b'p' => {
                let s = line!();
                memo_put!(s.parse().map_err(|_| err(at, "bad PUT".into()))?)
            }
            0x94 => {
                let k = memo.len() as u32;
                memo_put!(k)
            }
            b'h' => memo_get!(u8_!() as u32),
            b'j' => memo_get!(u32_!()),
            b'g' => {
                let s = line!();
                memo_get!(s.parse::<u32>().map_err(|_| err(at, "bad GET".into()))?)
            }
            b'0' => {
                stack.pop();
            }
            b'1' => {
                pop_mark!();
            }
            b'2' => {
                let v = match stack.last() {
                    Some(Item::Value(v)) => v,
                    _ => return Err(err(at, "DUP of nothing".into())),
                };
                charge!(v);
                let v = v.clone();
                stack.push(Item::Value(v));
            }
            other => return Err(err(at, format!("unsupported opcode 0x{other:02x}"))),
        }
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
