//! The gRPC codec of every Vigil service: prost's, except that a message is
//! encoded into a buffer reserved for its whole length first.
//!
//! tonic reserves a received message's length before it reads the body, but
//! encodes a message to send into a buffer that grows as it goes. A national
//! batch (10,000 records, about 11 MB) then grew by doubling from 8 KiB:
//! every step a fresh allocation, its pages faulted in and zeroed, and
//! everything so far copied across. Reserving `encoded_len()` first makes
//! that one allocation and one pass (docs/BENCHMARKS.md, "A commit written
//! while the next batch applies"). The bytes on the wire are the same.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// The codec generated clients and servers use (`proto/build.rs`).
#[derive(Debug, Clone)]
pub struct ReservingCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ReservingCodec<T, U> {
    fn default() -> Self {
        ReservingCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for ReservingCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder { _pd: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes `T` into a buffer reserved for its encoded length.
#[derive(Debug, Clone)]
pub struct ReservingEncoder<T> {
    _pd: PhantomData<T>,
}

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf).map_err(|e| Status::internal(format!("a message could not be encoded: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
