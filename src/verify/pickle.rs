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
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u32, (Value, u32)> = HashMap::new();
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
    // The deepest value this opcode took off the stack: what it builds nests
    // one deeper.
    let mut deepest: u32;
    macro_rules! pop {
        () => {
            match stack.pop() {
                Some(Item::Value(v, d)) => {
                    deepest = deepest.max(d);
                    v
                }
                _ => return Err(err(*pos, "stack underflow".into())),
            }
        };
    }
    macro_rules! too_deep {
        ($d:expr) => {
            if $d > MAX_DEPTH {
                return Err(err(
                    *pos,
                    format!("its values nest more than {MAX_DEPTH} deep (no checkpoint does; a crafted file does)"),
                ));
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
    // Every value pushed is charged too (a node, and its own bytes), not
    // only memo copies: a pickle of ten million `None`s is 10 MB of input and
    // would be hundreds of MB of values.
    macro_rules! push {
        ($value:expr $(,)?) => {{
            let value = $value;
            too_deep!(deepest + 1);
            spent = spent.saturating_add(shallow_weight(&value));
            if spent > MAX_VALUE_BYTES {
                return Err(err(
                    *pos,
                    format!(
                        "it builds more than {} MiB of values (a pickle that expands itself, such as a memo bomb)",
                        MAX_VALUE_BYTES >> 20
                    ),
                ));
            }
            stack.push(Item::Value(value, deepest + 1))
        }};
    }
    // After an opcode added to the value on top of the stack.
    macro_rules! grew_top {
        () => {{
            too_deep!(deepest + 1);
            if let Some(Item::Value(_, d)) = stack.last_mut() {
                *d = (*d).max(deepest + 1);
            }
        }};
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
                    Item::Value(v, d) => {
                        deepest = deepest.max(d);
                        v
                    }
                    Item::Mark => Value::None,
                })
                .collect();
            items
        }};
    }
    macro_rules! top {
        () => {
            match stack.last_mut() {
                Some(Item::Value(v, _)) => v,
                _ => return Err(err(*pos, "stack underflow".into())),
            }
        };
    }
    macro_rules! memo_put {
        ($k:expr) => {{
            let (v, d) = match stack.last() {
                Some(Item::Value(v, d)) => (v, *d),
                _ => return Err(err(*pos, "memo put of nothing".into())),
            };
            charge!(v);
            let v = v.clone();
            memo.insert($k, (v, d));
        }};
    }
    macro_rules! memo_get {
        ($k:expr) => {{
            let k = $k;
            match memo.get(&k) {
                Some((v, d)) => {
                    charge!(v);
                    stack.push(Item::Value(v.clone(), *d))
                }
                None => return Err(err(*pos, format!("memo key {k} missing"))),
            }
        }};
    }

    loop {
        let at = *pos;
        let op = u8_!();
        deepest = 0;
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
                return match stack.pop() {
                    Some(Item::Value(v, _)) => Ok(v),
                    _ => Err(err(*pos, "stack underflow".into())),
                };
            }
            b'(' => stack.push(Item::Mark),
            b'N' => push!(Value::None),
            0x88 => push!(Value::Bool(true)),
            0x89 => push!(Value::Bool(false)),
            b'J' => push!(Value::Int(i32::from_le_bytes(take!(4).try_into().unwrap()) as i64,)),
            b'K' => push!(Value::Int(u8_!() as i64)),
            b'M' => push!(Value::Int(u16_!() as i64)),
            0x8a | 0x8b => {
                let n = if op == 0x8a { u8_!() as usize } else { u32_!() as usize };
                let bytes = take!(n);
                push!(long_from_le(bytes));
            }
            b'I' => {
                let s = line!();
                push!(match s.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.parse().map_err(|_| err(at, format!("bad INT {s:?}")))?),
                });
            }
            b'L' => {
                let s = line!();
                let s = s.trim_end_matches('L');
                push!(Value::Int(s.parse().map_err(|_| err(at, format!("bad LONG {s:?}")))?,));
            }
            b'G' => push!(Value::Float(f64::from_be_bytes(take!(8).try_into().unwrap(),))),
            b'F' => {
                let s = line!();
                push!(Value::Float(
                    s.parse().map_err(|_| err(at, format!("bad FLOAT {s:?}")))?,
                ));
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => u32_!() as usize,
                    0x8c => u8_!() as usize,
                    _ => u64_!() as usize,
                };
                let s = String::from_utf8(take!(n).to_vec()).map_err(|_| err(at, "invalid UTF-8".into()))?;
                push!(Value::Str(s));
            }
            b'V' => {
                let s = line!();
                push!(Value::Str(s));
            }
            b'T' | b'U' => {
                let n = if op == b'T' { u32_!() as usize } else { u8_!() as usize };
                push!(Value::Str(String::from_utf8_lossy(take!(n)).into_owned()));
            }
            b'S' => {
                let s = line!();
                push!(Value::Str(s.trim_matches(['\'', '"']).to_string()));
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => u32_!() as usize,
                    b'C' => u8_!() as usize,
                    _ => u64_!() as usize,
                };
                push!(Value::Bytes(take!(n).to_vec()));
            }
            b']' => push!(Value::List(Vec::new())),
            b')' => push!(Value::Tuple(Vec::new())),
            b'}' => push!(Value::Dict(Vec::new())),
            0x8f => push!(Value::Set(Vec::new())),
            b'l' => {
                let items = pop_mark!();
                push!(Value::List(items));
            }
            b't' => {
                let items = pop_mark!();
                push!(Value::Tuple(items));
            }
            0x91 => {
                let items = pop_mark!();
                push!(Value::Set(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop!());
                }
                items.reverse();
                push!(Value::Tuple(items));
            }
            b'd' => {
                let items = pop_mark!();
                push!(Value::Dict(pairs(items)));
            }
            b'a' => {
                let v = pop!();
                match top!() {
                    Value::List(l) => l.push(v),
                    _ => return Err(err(at, "APPEND to a non-list".into())),
                }
                grew_top!();
            }
            b'e' => {
                let items = pop_mark!();
                match top!() {
                    Value::List(l) => l.extend(items),
                    _ => return Err(err(at, "APPENDS to a non-list".into())),
                }
                grew_top!();
            }
            0x90 => {
                let items = pop_mark!();
                match top!() {
                    Value::Set(s) => s.extend(items),
                    _ => return Err(err(at, "ADDITEMS to a non-set".into())),
                }
                grew_top!();
            }
            b's' => {
                let v = pop!();
                let k = pop!();
                set_items(top!(), vec![(k, v)]).map_err(|m| err(at, m))?;
                grew_top!();
            }
            b'u' => {
                let items = pop_mark!();
                set_items(top!(), pairs(items)).map_err(|m| err(at, m))?;
                grew_top!();
            }
            b'c' => {
                let module = line!();
                let name = line!();
                push!(Value::Global { module, name });
            }
            0x93 => {
                let name = pop!();
                let module = pop!();
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => push!(Value::Global { module, name }),
                    _ => return Err(err(at, "STACK_GLOBAL needs two strings".into())),
                }
            }
            b'R' | 0x81 => {
                let args = pop!();
                let callable = pop!();
                push!(Value::Call {
                    callable: Box::new(callable),
                    args: Box::new(args),
                });
            }
            0x92 => {
                let _kwargs = pop!();
                let args = pop!();
                let callable = pop!();
                push!(Value::Call {
                    callable: Box::new(callable),
                    args: Box::new(args),
                });
            }
            b'b' => {
                let state = pop!();
                let object = pop!();
                push!(Value::Build {
                    object: Box::new(object),
                    state: Box::new(state),
                });
            }
            b'Q' => {
                let pid = pop!();
                push!(Value::PersistentId(Box::new(pid)));
            }
            b'P' => {
                let pid = line!();
                push!(Value::PersistentId(Box::new(Value::Str(pid))));
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
                let (v, d) = match stack.last() {
                    Some(Item::Value(v, d)) => (v, *d),
                    _ => return Err(err(at, "DUP of nothing".into())),
                };
                charge!(v);
                let v = v.clone();
                stack.push(Item::Value(v, d));
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
