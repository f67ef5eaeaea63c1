//! Reading a request body, never more of it than the flow allows.

use axum::body::Body;
use bytes::Bytes;

use crate::beckn::ack::Rejection;

/// Reads the body, refusing it (413) as soon as it passes `limit` bytes; a body that cannot be
/// read is a 400.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Rejection> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            Rejection::TooLarge(limit)
        } else {
            Rejection::Unreadable(inner.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_up_to_the_limit_is_read_and_one_byte_more_is_refused() {
        let read = read_body(Body::from("12345"), 5).await.unwrap();
        assert_eq!(&read[..], b"12345");
        let refused = read_body(Body::from("123456"), 5).await.unwrap_err();
        assert!(matches!(refused, Rejection::TooLarge(5)), "{refused:?}");
    }

    #[tokio::test]
    async fn a_streamed_body_is_refused_once_it_passes_the_limit() {
        let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("123"), Ok("456")];
        let body = Body::from_stream(futures::stream::iter(chunks));
        let refused = read_body(body, 5).await.unwrap_err();
        assert!(matches!(refused, Rejection::TooLarge(5)), "{refused:?}");
    }

    #[tokio::test]
    async fn a_broken_body_is_unreadable() {
        let chunks: Vec<Result<&'static str, std::io::Error>> =
            vec![Ok("12"), Err(std::io::Error::other("reset"))];
        let body = Body::from_stream(futures::stream::iter(chunks));
        let refused = read_body(body, 5).await.unwrap_err();
        assert!(matches!(refused, Rejection::Unreadable(_)), "{refused:?}");
    }
}
