//! Reading a sequencer's pending pool (`txpool_content`: geth, op-geth, reth, anvil) for what
//! the report must outbid, within fixed bounds: the answer is read up to [`MAX_POOL_BYTES`]
//! and parsed in one pass that keeps two numbers per pool, never the pool itself, so a pool of 10 000 transactions costs its bytes once and a few microseconds
//! per transaction (BENCHMARKS.md).

use std::fmt;

use alloy::primitives::{Address, U128};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};

/// The largest `txpool_content` answer read (geth's default pool holds 5 120 transactions,
/// about 4 MB of JSON; this leaves room for an 8× larger pool).
pub const MAX_POOL_BYTES: usize = 32 << 20;

/// The best prices other senders' pending (executable) transactions offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Competition {
    /// The highest max fee per gas (legacy: gas price) of another sender's pending transaction.
    pub max_fee: u128,
    /// The highest priority fee (legacy: gas price) of another sender's pending transaction.
    pub tip: u128,
    /// How many such transactions are pending.
    pub count: usize,
}

impl Competition {
    /// The higher of two pools' best offers.
    pub fn merge(self, other: Competition) -> Competition {
        Competition {
            max_fee: self.max_fee.max(other.max_fee),
            tip: self.tip.max(other.tip),
            count: self.count + other.count,
        }
    }

    /// The price a competitor offers on the stricter of both orderings: max fee (anvil) and
    /// priority fee (geth, reth, Besu, through the effective tip).
    pub fn best(&self) -> u128 {
        self.max_fee.max(self.tip)
    }
}

/// What one pool holds that matters to the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolView {
    /// Everyone else's best offer (our own transactions are not competitors).
    pub competition: Competition,
}

/// The fields of a pooled transaction we read; the rest is skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PooledTx {
    max_fee_per_gas: Option<U128>,
    max_priority_fee_per_gas: Option<U128>,
    gas_price: Option<U128>,
}

/// Parses a whole JSON-RPC answer to `txpool_content`. `Err` carries the node's error message
/// (method not found, ...) or why the answer is unreadable.
pub fn parse_answer(body: &[u8], ours: Address) -> Result<PoolView, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let answer = AnswerSeed { ours }.deserialize(&mut de).map_err(|e| format!("unreadable txpool_content: {e}"))?;
    de.end().map_err(|e| format!("unreadable txpool_content: {e}"))?;
    answer
}

struct AnswerSeed {
    ours: Address,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed {
    type Value = Result<PoolView, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed {
    type Value = Result<PoolView, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        struct RpcErr {
            message: String,
        }
        let mut out = Err("the answer has neither result nor error".to_owned());
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "result" => {
                    out = map.next_value_seed(ContentSeed { ours: self.ours })?.ok_or_else(|| "null pool".into())
                }
                "error" => out = Err(map.next_value::<RpcErr>()?.message),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// `{"pending": {...}, "queued": {...}}`; only pending transactions are executable.
struct ContentSeed {
    ours: Address,
}

impl<'de> DeserializeSeed<'de> for ContentSeed {
    type Value = Option<PoolView>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed {
    type Value = Option<PoolView>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a txpool_content object")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut view = PoolView::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "pending" {
                map.next_value_seed(Senders { ours: self.ours, view: &mut view })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(view))
    }
}

/// `{sender: {nonce: tx}}`, folded into the view.
struct Senders<'a> {
    ours: Address,
    view: &'a mut PoolView,
}

impl<'de> DeserializeSeed<'de> for Senders<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Senders<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pending transactions by sender")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(sender) = map.next_key::<Address>()? {
            let ours = sender == self.ours;
            map.next_value_seed(Txs { ours, view: &mut *self.view })?;
        }
        Ok(())
    }
}

/// `{nonce: tx}` of one sender.
struct Txs<'a> {
    ours: bool,
    view: &'a mut PoolView,
}

impl<'de> DeserializeSeed<'de> for Txs<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Txs<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pending transactions by nonce")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(_nonce) = map.next_key::<IgnoredAny>()? {
            let tx: PooledTx = map.next_value()?;
            if self.ours {
                continue;
            }
            let price = |p: Option<U128>| p.or(tx.gas_price).map_or(0, |v| v.to::<u128>());
            let c = &mut self.view.competition;
            c.max_fee = c.max_fee.max(price(tx.max_fee_per_gas));
            c.tip = c.tip.max(price(tx.max_priority_fee_per_gas));
            c.count += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;

    /// A `txpool_content` answer in anvil's and geth's shape.
    pub(crate) fn answer(ours: Address, users: usize) -> String {
        let mut pending = Vec::new();
        for i in 0..users {
            let from = Address::with_last_byte((i % 200) as u8 + 1);
            pending.push(format!(
                r#""{from}":{{"{i}":{{"type":"0x2","nonce":"{i:#x}","gas":"0x5208","maxFeePerGas":"{:#x}","maxPriorityFeePerGas":"{:#x}","to":"{from}","value":"0x0","accessList":[],"input":"0x","r":"0x1","s":"0x2","yParity":"0x0","hash":"{}","blockHash":null,"from":"{from}","gasPrice":"{:#x}"}}}}"#,
                1_000 + i,
                500 + 2 * i,
                B256::with_last_byte(i as u8),
                1_000 + i,
            ));
        }
        pending.push(format!(
            r#""{ours}":{{"7":{{"type":"0x2","nonce":"0x7","maxFeePerGas":"0xffffffffff","maxPriorityFeePerGas":"0xffffffffff","hash":"{}"}}}}"#,
            B256::repeat_byte(0xaa)
        ));
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"pending":{{{}}},"queued":{{"{}":{{"9":{{"gasPrice":"0xffffffffffff"}}}}}}}}}}"#,
            pending.join(","),
            Address::with_last_byte(250)
        )
    }

    #[test]
    fn the_best_competitor_on_both_orderings_our_own_transactions_and_no_queued_ones() {
        let ours = Address::repeat_byte(0x11);
        let view = parse_answer(answer(ours, 3).as_bytes(), ours).unwrap();
        assert_eq!(view.competition, Competition { max_fee: 1_002, tip: 504, count: 3 });
        // Ours (max fee 0xffffffffff) are not competitors, nor queued transactions.
        assert_eq!(view.competition.best(), 1_002);
    }

    #[test]
    fn a_legacy_transaction_competes_with_its_gas_price_on_both_orderings() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"pending":{"0x0000000000000000000000000000000000000001":{"0":{"type":"0x0","gasPrice":"0x64","hash":null}}},"queued":{}}}"#;
        let view = parse_answer(body.as_bytes(), Address::ZERO).unwrap();
        assert_eq!(view.competition, Competition { max_fee: 100, tip: 100, count: 1 });
    }

    #[test]
    fn a_node_without_the_method_and_garbage_are_errors_not_an_empty_pool() {
        let no_method = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the method txpool_content does not exist/is not available"}}"#;
        assert!(parse_answer(no_method.as_bytes(), Address::ZERO).unwrap_err().contains("does not exist"));
        assert!(parse_answer(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}", Address::ZERO).is_err());
        assert!(parse_answer(b"<html>", Address::ZERO).is_err());
        assert!(parse_answer(br#"{"result":{"pending":{"0x01":{}}}}"#, Address::ZERO).is_err(), "bad address");
        let empty = parse_answer(br#"{"result":{"pending":{},"queued":{}}}"#, Address::ZERO).unwrap();
        assert_eq!(empty, PoolView::default());
    }

    #[test]
    fn ten_thousand_pending_transactions_parse_into_two_numbers() {
        let ours = Address::repeat_byte(0x11);
        let body = answer(ours, 10_000);
        let view = parse_answer(body.as_bytes(), ours).unwrap();
        assert_eq!(view.competition.count, 10_000);
        assert_eq!(view.competition.max_fee, 1_000 + 9_999);
        assert_eq!(view.competition.tip, 500 + 2 * 9_999);
    }
}
