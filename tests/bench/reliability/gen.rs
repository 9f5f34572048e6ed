//! The fuzz's request generator: malformed JSON-RPC requests of many kinds, from a seed.

use super::{Case, METHODS};
use crate::common::Rng;

/// One request. Heavy kinds (oversized bodies, deep nesting, big batches) are rarer.
pub fn gen_case(rng: &mut Rng) -> Case {
    let json = "application/json";
    let (kind, body): (&'static str, Vec<u8>) = match rng.range(0, 100) {
        0..12 => ("random bytes", {
            let n = rng.below(2048);
            rng.bytes(n)
        }),
        12..22 => ("truncated JSON", {
            let params = valid_params(rng);
            let full = request(rng, &params);
            let cut = rng.below(full.len().max(1));
            full.as_bytes()[..cut].to_vec()
        }),
        22..40 => ("wrong param types", {
            let mut params = String::new();
            if rng.chance(70) {
                params.push('[');
                for i in 0..rng.range(0, 4) {
                    if i > 0 {
                        params.push(',');
                    }
                    value(rng, 3, &mut params);
                }
                params.push(']');
            } else {
                value(rng, 3, &mut params);
            }
            request(rng, &params).into_bytes()
        }),
        40..50 => ("unknown method", {
            let method = random_string(rng, 300);
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":{method},"params":[]}}"#).into_bytes()
        }),
        50..58 => ("odd id", {
            let id = rng.pick(&ODD_IDS);
            let method = rng.pick(&METHODS);
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":[]}}"#).into_bytes()
        }),
        58..63 => ("deep nesting", {
            let depth = rng.range(100, 100_000) as usize;
            let (open, close) = if rng.chance(50) { ("[", "]") } else { (r#"{"a":"#, "}") };
            let mut s = String::from(r#"{"jsonrpc":"2.0","id":1,"method":"supervisor_l1BlockByNumber","params":"#);
            s.push_str(&open.repeat(depth));
            s.push('1');
            if rng.chance(70) {
                s.push_str(&close.repeat(depth));
                s.push('}');
            }
            s.into_bytes()
        }),
        63..66 => ("oversized body", {
            let size = if rng.chance(90) { rng.range(1 << 20, 3 << 19) } else { rng.range(3 << 20, 5 << 20) } as usize;
            let mut s = String::from(r#"{"jsonrpc":"2.0","id":1,"method":"supervisor_syncStatus","params":[""#);
            s.push_str(&"x".repeat(size));
            s.push_str("\"]}");
            s.into_bytes()
        }),
        66..76 => ("junk batch", {
            let mut s = String::from("[");
            for i in 0..rng.range(1, 200) {
                if i > 0 {
                    s.push(',');
                }
                if rng.chance(40) {
                    let params = valid_params(rng);
                    s.push_str(&request(rng, &params));
                } else {
                    value(rng, 2, &mut s);
                }
            }
            s.push(']');
            s.into_bytes()
        }),
        76..80 => ("empty batch", b"[]".to_vec()),
        80..83 => ("big valid batch", {
            let items: Vec<String> = (0..rng.range(1, 2000))
                .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"supervisor_syncStatus","params":[]}}"#))
                .collect();
            format!("[{}]", items.join(",")).into_bytes()
        }),
        83..90 => ("bad envelope", rng.pick(&ENVELOPES).as_bytes().to_vec()),
        90..94 => {
            let params = valid_params(rng);
            let body = request(rng, &params).into_bytes();
            let ct =
                *rng.pick(&["text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=utf-16"]);
            return Case::Http { kind: "wrong content type", body, content_type: ct };
        }
        94..97 => {
            let n = rng.below(4096);
            return Case::Raw { bytes: rng.bytes(n) };
        }
        _ => return Case::Raw { bytes: rng.pick(&RAW_HTTP).as_bytes().to_vec() },
    };
    Case::Http { kind, body, content_type: json }
}

const ODD_IDS: [&str; 14] = [
    "18446744073709551616",
    "-1",
    "-9223372036854775809",
    "1e308",
    "1.5",
    "-0",
    "\"\"",
    "\"id\"",
    "{}",
    "[]",
    "[1,2,3]",
    "null",
    "true",
    "99999999999999999999999999999999999999999999999999999999999999999999999999",
];

const ODD_NUMBERS: [&str; 7] = ["1e400", "-1e-400", "0.5", "1E2", "18446744073709551616", "-0", "1.0"];

const ENVELOPES: [&str; 12] = [
    r#"{}"#,
    r#"{"jsonrpc":"1.0","id":1,"method":"supervisor_syncStatus","params":[]}"#,
    r#"{"id":1,"method":"supervisor_syncStatus"}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":7,"params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":null}"#,
    r#"{"jsonrpc":"2.0","method":"supervisor_syncStatus","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"supervisor_syncStatus","params":"x"}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"supervisor_syncStatus","params":[],"jsonrpc":"2.0","id":2}"#,
    r#"null"#,
    r#""supervisor_syncStatus""#,
    r#"[[],[[]],{}]"#,
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"supervisor_\u{0}syncStatus\",\"params\":[]}",
];

const RAW_HTTP: [&str; 8] = [
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\njunk\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
    "POST / HTTP/9.9\r\n\r\n",
    "\r\n\r\n\r\n\r\n",
];

/// A request for a known method with the given params text.
fn request(rng: &mut Rng, params: &str) -> String {
    let method = rng.pick(&METHODS);
    format!(r#"{{"jsonrpc":"2.0","id":{},"method":"{method}","params":{params}}}"#, rng.range(0, 1 << 20))
}

/// Params of a plausible shape: a chain id, a block number.
fn valid_params(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => "[]".to_owned(),
        1 => format!("[{}]", rng.range(0, 1000)),
        2 => format!("[901,\"0x{:x}\"]", rng.range(0, 200)),
        _ => format!("[\"0x{:x}\"]", rng.range(0, 1 << 40)),
    }
}

/// Random JSON text (valid JSON, arbitrary shape and values), nested up to `depth`.
fn value(rng: &mut Rng, depth: u32, out: &mut String) {
    let top = if depth == 0 { 8 } else { 10 };
    match rng.below(top) {
        0 => out.push_str("null"),
        1 => out.push_str(if rng.chance(50) { "true" } else { "false" }),
        2 => out.push_str(&rng.next_u64().to_string()),
        3 => out.push_str(&format!("-{}", rng.next_u64())),
        4 => {
            let n: &&str = rng.pick(&ODD_NUMBERS);
            out.push_str(n);
        }
        5 => out.push_str(&format!("\"0x{:x}\"", rng.next_u64())),
        6 => out.push_str(&format!("\"{}\"", rng.pick(&["latest", "safe", "finalized", "0x", "0x-1", "0xzz", ""]))),
        7 => out.push_str(&random_string(rng, 64)),
        8 => {
            out.push('[');
            for i in 0..rng.range(0, 4) {
                if i > 0 {
                    out.push(',');
                }
                value(rng, depth - 1, out);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.range(0, 4) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&random_string(rng, 12));
                out.push(':');
                value(rng, depth - 1, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal of up to `max` random characters (control characters escaped,
/// non-ASCII included).
fn random_string(rng: &mut Rng, max: usize) -> String {
    let n = rng.below(max + 1);
    let chars: String = (0..n)
        .map(|_| match rng.below(4) {
            0 => char::from_u32(rng.range(0x20, 0x7f) as u32).unwrap_or('a'),
            1 => char::from_u32(rng.range(0xa0, 0xd7ff) as u32).unwrap_or('é'),
            2 => char::from_u32(rng.range(0, 0x20) as u32).unwrap_or('\n'),
            _ => *rng.pick(&['"', '\\', '/', 'x', '0']),
        })
        .collect();
    serde_json::to_string(&chars).unwrap_or_else(|_| "\"\"".to_owned())
}
