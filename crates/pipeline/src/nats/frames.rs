//! Many protobuf messages in one NATS message: each item length-delimited
//! (a varint length, then the bytes), one after another. JetStream's cost
//! is per message (dedup, subject match, store, ack), so carrying a batch
//! of events per message is what lets the services keep up with `scan`.

use std::collections::BTreeMap;

use prost::Message;

/// Largest payload packed into one message: well under NATS's default
/// 1 MiB limit, leaving room for headers.
pub const MAX_PAYLOAD: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {index} is cut short: {reason}")]
pub struct FrameError {
    pub index: usize,
    pub reason: &'static str,
}

/// The items of a payload, in order; a broken framing ends it with an error.
pub fn items(payload: &[u8]) -> impl Iterator<Item = Result<&[u8], FrameError>> {
    let mut rest = payload;
    let mut index = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let item = take_item(&mut rest).map_err(|reason| FrameError { index, reason });
        if item.is_err() {
            rest = &[];
        }
        index += 1;
        Some(item)
    })
}

fn take_item<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = prost::encoding::decode_varint(rest).map_err(|_| "no valid length")?;
    let len = usize::try_from(len).map_err(|_| "length too large")?;
    if len > rest.len() {
        return Err("its length runs past the end of the message");
    }
    let (item, tail) = rest.split_at(len);
    *rest = tail;
    Ok(item)
}

/// Every item of a payload decoded as `M`, or why the payload is not
/// such a batch.
pub fn decode_all<M: Message + Default>(payload: &[u8]) -> Result<Vec<M>, String> {
    items(payload)
        .enumerate()
        .map(|(i, item)| {
            let item = item.map_err(|e| e.to_string())?;
            M::decode(item).map_err(|e| format!("item {i}: {e}"))
        })
        .collect()
}

/// One item as a payload of its own (a dead letter of one event).
pub fn single(item: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(item.len() + 5);
    prost::encoding::encode_varint(item.len() as u64, &mut payload);
    payload.extend_from_slice(item);
    payload
}

/// A payload ready to publish, with the number of items it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub subject: String,
    /// Its place among the payloads of the same subject: with the packer's
    /// origin, it names the message.
    pub chunk: usize,
    pub payload: Vec<u8>,
    pub items: usize,
}

/// Groups encoded items by subject into payloads of at most `max_payload`
/// bytes, in the order they were pushed; unbatched, each item is a bare
/// message of its own.
#[derive(Debug)]
pub struct Packer {
    max_payload: usize,
    batched: bool,
    open: BTreeMap<String, Packed>,
    done: Vec<Packed>,
    chunks: BTreeMap<String, usize>,
}

impl Packer {
    pub fn new(max_payload: usize, batched: bool) -> Self {
        Self {
            max_payload,
            batched,
            open: BTreeMap::new(),
            done: Vec::new(),
            chunks: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, subject: &str, item: &impl Message) {
        let len = item.encoded_len();
        let framed = len + prost::length_delimiter_len(len);
        if let Some(open) = self.open.get(subject)
            && (open.payload.len() + framed > self.max_payload || !self.batched)
        {
            let full = self.open.remove(subject).expect("checked above");
            self.done.push(full);
        }
        let open = self.open.entry(subject.to_string()).or_insert_with(|| {
            let chunk = self.chunks.entry(subject.to_string()).or_default();
            *chunk += 1;
            Packed {
                subject: subject.to_string(),
                chunk: *chunk - 1,
                // Room for a few dozen events: fewer regrowths of the payload.
                payload: Vec::with_capacity(framed.max(64 << 10).min(self.max_payload)),
                items: 0,
            }
        });
        if self.batched {
            item.encode_length_delimited(&mut open.payload)
        } else {
            item.encode(&mut open.payload)
        }
        .expect("a Vec grows to fit");
        open.items += 1;
    }

    pub fn batched(&self) -> bool {
        self.batched
    }

    /// Every payload, full ones first, then those still open by subject;
    /// the packer starts afresh.
    pub fn finish(&mut self) -> Vec<Packed> {
        let mut out = std::mem::take(&mut self.done);
        out.extend(std::mem::take(&mut self.open).into_values());
        self.chunks.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhound_proto::CloudTrailEvent;

    fn event(id: &str) -> CloudTrailEvent {
        CloudTrailEvent {
            event_id: id.to_string(),
            event_name: "GetObject".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn items_round_trip_in_order_per_subject() {
        let mut packer = Packer::new(MAX_PAYLOAD, true);
        for i in 0..10 {
            packer.push(if i % 2 == 0 { "a" } else { "b" }, &event(&i.to_string()));
        }
        let packed = packer.finish();
        assert_eq!(packed.len(), 2);
        let a: Vec<CloudTrailEvent> = decode_all(&packed[0].payload).unwrap();
        let ids: Vec<&str> = a.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!((packed[0].subject.as_str(), packed[0].items), ("a", 5));
        assert_eq!(ids, ["0", "2", "4", "6", "8"]);
        assert!(packer.finish().is_empty(), "the packer starts afresh");
    }

    #[test]
    fn payloads_stay_under_the_limits() {
        let one = event("0123456789");
        let framed = single(&one.encode_to_vec()).len();
        let mut packer = Packer::new(framed * 3, true);
        for _ in 0..7 {
            packer.push("a", &one);
        }
        let packed = packer.finish();
        let sizes: Vec<usize> = packed.iter().map(|p| p.items).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let chunks: Vec<usize> = packed.iter().map(|p| p.chunk).collect();
        assert_eq!(chunks, [0, 1, 2]);
        assert!(packed.iter().all(|p| p.payload.len() <= framed * 3));

        let mut unbatched = Packer::new(MAX_PAYLOAD, false);
        unbatched.push("a", &one);
        unbatched.push("a", &one);
        let bare = unbatched.finish();
        assert_eq!(bare.len(), 2, "one item a message");
        assert_eq!(bare[1].chunk, 1);
        assert_eq!(bare[0].payload, one.encode_to_vec(), "not framed");
    }

    #[test]
    fn a_single_item_is_a_payload_of_one() {
        let bytes = event("x").encode_to_vec();
        let payload = single(&bytes);
        let items: Vec<&[u8]> = items(&payload).map(Result::unwrap).collect();
        assert_eq!(items, [bytes.as_slice()]);
    }

    #[test]
    fn broken_framing_is_an_error_naming_the_item() {
        let mut payload = single(&event("a").encode_to_vec());
        payload.extend_from_slice(&[50, 1, 2]);
        let got: Vec<_> = items(&payload).collect();
        assert!(got[0].is_ok());
        assert_eq!(
            got[1],
            Err(FrameError {
                index: 1,
                reason: "its length runs past the end of the message"
            })
        );
        assert_eq!(got.len(), 2);
        let e = decode_all::<CloudTrailEvent>(b"not protobuf").unwrap_err();
        assert!(e.contains("item 0"), "{e}");
    }
}
