//! The BlobStore conformance suite: put, put-if-absent races, whole/ranged/streamed reads,
//! listing, deletes and a large object. Panics (assertions) on any deviation.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;

use crate::BlobStore;

/// Runs every check on an empty store.
pub async fn run(store: Arc<dyn BlobStore>) {
    let s = &*store;
    assert_eq!(s.get("a/missing").await.unwrap(), None);
    assert_eq!(s.size("a/missing").await.unwrap(), None);
    assert!(s.get_stream("a/missing").await.unwrap().is_none());

    s.put("a/one", Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    assert_eq!(s.get("a/one").await.unwrap().unwrap(), &b"hello world"[..]);
    assert_eq!(s.size("a/one").await.unwrap(), Some(11));
    assert_eq!(
        s.get_range("a/one", 6..11).await.unwrap().unwrap(),
        &b"world"[..]
    );
    s.put("a/one", Bytes::from_static(b"replaced"))
        .await
        .unwrap();
    assert_eq!(s.get("a/one").await.unwrap().unwrap(), &b"replaced"[..]);

    assert!(
        s.put_if_absent("a/two", Bytes::from_static(b"first"))
            .await
            .unwrap()
    );
    assert!(
        !s.put_if_absent("a/two", Bytes::from_static(b"second"))
            .await
            .unwrap()
    );
    assert_eq!(s.get("a/two").await.unwrap().unwrap(), &b"first"[..]);

    // Concurrent put-if-absent: exactly one writer wins and its bytes are what is stored.
    let mut tasks = vec![];
    for i in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let won = store
                .put_if_absent("race/key", Bytes::from(vec![i; 1024]))
                .await
                .unwrap();
            (i, won)
        }));
    }
    let mut winners = vec![];
    for t in tasks {
        let (i, won) = t.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one put_if_absent wins");
    assert_eq!(
        s.get("race/key").await.unwrap().unwrap(),
        Bytes::from(vec![winners[0]; 1024])
    );

    // A large object, read whole, by range and as a stream.
    let big: Vec<u8> = (0..(24 * 1024 * 1024 + 7))
        .map(|i| (i % 251) as u8)
        .collect();
    s.put("big/object", Bytes::from(big.clone())).await.unwrap();
    assert_eq!(s.size("big/object").await.unwrap(), Some(big.len() as u64));
    let range = 10_000_000..10_000_100u64;
    assert_eq!(
        s.get_range("big/object", range.clone())
            .await
            .unwrap()
            .unwrap(),
        &big[range.start as usize..range.end as usize]
    );
    let chunks: Vec<Bytes> = s
        .get_stream("big/object")
        .await
        .unwrap()
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let streamed: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    assert!(streamed == big, "streamed bytes equal the stored object");

    assert_eq!(
        s.list("a").await.unwrap(),
        vec!["a/one".to_string(), "a/two".to_string()]
    );
    s.put("a/nested/deep/three", Bytes::from_static(b"3"))
        .await
        .unwrap();
    assert_eq!(s.list("a").await.unwrap().len(), 3, "listing is recursive");
    assert!(s.list("nothing-here").await.unwrap().is_empty());

    s.delete("a/one").await.unwrap();
    s.delete("a/one").await.unwrap();
    assert_eq!(s.get("a/one").await.unwrap(), None);
    assert_eq!(s.list("a").await.unwrap().len(), 2);
}
