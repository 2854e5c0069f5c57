//! Target `store_codec`: arbitrary bytes through every decoder of the
//! stored-record codec (`tkr_embed::store::codec`), as if read back from a
//! damaged or hostile sled tree.
//!
//! Properties: no decoder panics or allocates beyond a small multiple of
//! the input (libFuzzer's `-malloc_limit_mb` / `-rss_limit_mb` catch that);
//! whatever decodes re-encodes to bytes that decode and re-encode to the
//! same bytes (the codec is a fixed point after one round).
use serde::de::DeserializeOwned;
use serde::Serialize;
use tkr_embed::store::codec::{
    self, ChangeRecord, CollectionRecord, DocRecord, StoreMeta, RECORD_VERSION,
};

pub fn run(data: &[u8]) {
    roundtrip::<DocRecord>(data);
    roundtrip::<StoreMeta>(data);
    roundtrip::<ChangeRecord>(data);
    roundtrip::<CollectionRecord>(data);
    // Collection records of either shape (the old one lacks two fields).
    if let Ok(record) = codec::decode_collection(data) {
        let bytes = codec::encode(&record).expect("a decoded record encodes");
        let again = codec::decode_collection(&bytes).expect("re-encoded bytes decode");
        assert_eq!(
            codec::encode(&again).unwrap(),
            bytes,
            "collection round trip"
        );
    }
    // Every record is refused without its version byte or with another one.
    if let Some((&version, _)) = data.split_first() {
        if version != RECORD_VERSION {
            assert!(codec::decode::<DocRecord>(data).is_err());
            assert!(codec::decode_collection(data).is_err());
        }
    }

    match codec::decode_vectors(data) {
        Ok(values) => {
            assert_eq!(values.len() * 4, data.len());
            assert_eq!(codec::encode_vectors(&values), data, "vector round trip");
        }
        Err(_) => assert!(!data.len().is_multiple_of(4)),
    }
    match codec::decode_seq_key(data) {
        Ok(seq) => assert_eq!(codec::seq_key(seq).as_slice(), data),
        Err(_) => assert_ne!(data.len(), 8),
    }
    match codec::decode_u64(data) {
        Ok(v) => assert_eq!(codec::encode_u64(v).as_slice(), data),
        Err(_) => assert_ne!(data.len(), 8),
    }
}

/// Decode, encode, decode, encode: the two encodings are equal. (Values
/// are compared as bytes: a span may hold a NaN, which is not equal to
/// itself.)
fn roundtrip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(value) = codec::decode::<T>(data) else {
        return;
    };
    let bytes = codec::encode(&value).expect("a decoded record encodes");
    let again: T = codec::decode(&bytes).expect("re-encoded bytes decode");
    assert_eq!(
        codec::encode(&again).expect("encodes"),
        bytes,
        "{} round trip",
        std::any::type_name::<T>()
    );
}
