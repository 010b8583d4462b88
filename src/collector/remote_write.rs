//! Prometheus remote write 1.0: the protobuf messages (written by hand from
//! `prompb/remote.proto` and `prompb/types.proto`, only the fields 1.0 needs), the
//! snappy block encoding, the request with its required headers, and what an answer
//! means.
//!
//! Spec: <https://prometheus.io/docs/concepts/remote_write_spec/>

use std::time::Duration;

use prost::Message;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use secrecy::ExposeSecret;

use crate::config::{HttpAuth, RemoteWriteSettings};
use crate::net::http::{classify_error, classify_status};
use crate::net::Outcome;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

pub const USER_AGENT_VALUE: &str = concat!("amrelay/", env!("CARGO_PKG_VERSION"));

/// Snappy block format, as the spec requires (not the framed format).
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(raw)
}

pub fn decompress(compressed: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Decoder::new().decompress_vec(compressed)
}

/// Decodes a request body as a receiver would: snappy block, then protobuf.
pub fn decode_body(body: &[u8]) -> anyhow::Result<WriteRequest> {
    Ok(WriteRequest::decode(decompress(body)?.as_slice())?)
}

/// Posts one batch; the caller decides what to do with the outcome.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &RemoteWriteSettings,
    body: Vec<u8>,
) -> Outcome {
    let mut req = client
        .post(endpoint.url.clone())
        .timeout(endpoint.timeout)
        .header(CONTENT_ENCODING, HeaderValue::from_static("snappy"))
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        )
        .header(
            "X-Prometheus-Remote-Write-Version",
            HeaderValue::from_static("0.1.0"),
        )
        .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
        .body(body);
    req = match &endpoint.auth {
        None => req,
        Some(HttpAuth::Bearer(t)) => req.bearer_auth(t.expose_secret()),
        Some(HttpAuth::Basic { username, password }) => {
            req.basic_auth(username, Some(password.expose_secret()))
        }
    };
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap_or_default();
            classify_status(status, &headers, &text)
        }
        Err(e) => classify_error(&e),
    }
}

/// How long to wait before resending a batch that failed `attempts` times in a row.
pub fn retry_delay(
    attempts: u32,
    retry_after: Option<Duration>,
    endpoint: &RemoteWriteSettings,
) -> Duration {
    match retry_after {
        // The receiver's wish, never longer than max_retry_after.
        Some(ra) => ra.min(endpoint.max_retry_after),
        None => {
            crate::deliver::retry::backoff(attempts, endpoint.backoff_min, endpoint.backoff_max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "x".into(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
            }],
        };
        let body = compress(&req.encode_to_vec()).unwrap();
        // Block format: starts with the varint length, not the framed stream identifier.
        assert_ne!(body[0], 0xff);
        assert_eq!(decode_body(&body).unwrap(), req);
    }

    #[test]
    fn concatenated_requests_decode_as_one() {
        // Batches are built by concatenating stored scrapes: protobuf appends repeated
        // fields when messages are concatenated.
        let one = |v: f64| WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "a".into(),
                }],
                samples: vec![Sample {
                    value: v,
                    timestamp: v as i64,
                }],
            }],
        };
        let mut raw = one(1.0).encode_to_vec();
        raw.extend(one(2.0).encode_to_vec());
        let got = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(got.timeseries.len(), 2);
        assert_eq!(got.timeseries[1].samples[0].value, 2.0);
    }
}
