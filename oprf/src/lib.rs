//! `vigil-oprf`: the oblivious pseudorandom function behind Vigil's tokens
//! once the key service runs (issue 11): RFC 9497 POPRF (the partially
//! oblivious mode, with a public input) over ristretto255 with SHA-512.
//!
//! A node **blinds** each match key (a random scalar times the key hashed
//! to the group), the key service **evaluates** a batch of blinded elements
//! under its secret key and the batch's public input (the key kind and the
//! epoch, [`info`]) and proves with one batched DLEQ proof that it used its
//! published key, and the node **verifies and unblinds**: the output is the
//! key's PRF value, which the node alone learns. The service never sees a
//! key; the node never holds anything that computes a value offline.
//!
//! The protocol is written against `curve25519-dalek` ([`poprf`]) so that
//! the batched proof costs one multi-scalar multiplication at the service
//! and two at the node, as the RFC intends; the tests check the RFC's
//! vectors byte for byte and agreement with the `voprf` crate both ways.
//! Pure: bytes in, bytes out (randomness from the operating system for
//! blinds and proof nonces). `benches/oprf.rs` measures each side against
//! one scalar multiplication.
//!
//! # Layout
//! - [`info`]: the public input of an evaluation.
//! - [`ServerKey`]: the key service's side: a key per epoch, batch evaluation
//!   with its proof.
//! - [`blind`], [`finalize`]: the node's side.
//! - `poprf`: the RFC's steps (hashing to the group and to scalars, the
//!   composites, the proof).

#![forbid(unsafe_code)]

mod poprf;

use curve25519_dalek::scalar::Scalar;

/// Bytes of a serialised group element (blinded or evaluated).
pub const ELEMENT: usize = 32;
/// Bytes of a serialised batched DLEQ proof (two scalars).
pub const PROOF: usize = 64;
/// Bytes of an OPRF output (SHA-512).
pub const OUTPUT: usize = 64;
/// Most elements in one batch (the RFC's limit).
pub const MAX_BATCH: usize = u16::MAX as usize;

/// Why an operation failed. Messages never carry inputs or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OprfError {
    /// An input is empty or longer than 65,535 bytes.
    #[error("an OPRF input is empty or longer than 65535 bytes")]
    Input,
    /// Element `0` of a batch is not a valid encoding of a group element
    /// (or is the identity).
    #[error("element {0} of the batch is not a valid ristretto255 element")]
    Element(usize),
    /// The batch is empty, too large, or its parts differ in length.
    #[error("a batch must hold 1 to 65535 elements, the same number in every part")]
    Batch,
    /// The proof does not show that the published key was used.
    #[error("the key service's proof does not verify against its published key")]
    Proof,
    /// The public key is not a valid element.
    #[error("the key service's public key is not a valid ristretto255 element")]
    PublicKey,
    /// The key could not be derived.
    #[error("the key service's key could not be derived from its seed")]
    Key,
}

/// The public input of an evaluation: the key kind (its wire number) and
/// the epoch. Outputs for different kinds or epochs are unrelated, and the
/// node checks that the proof was made for exactly this input.
pub fn info(kind: u32, epoch: u32) -> Vec<u8> {
    format!("vigil-poprf/v1 kind={kind} epoch={epoch}").into_bytes()
}

fn key_info(epoch: u32) -> Vec<u8> {
    format!("vigil-keyserver/v1 epoch={epoch}").into_bytes()
}

/// The key service's key for one epoch (zeroised on drop).
pub struct ServerKey {
    sk: Scalar,
}

impl Drop for ServerKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.sk);
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey {{ public: {:02x?}, secret: <redacted> }}", &self.public_key()[..4])
    }
}

impl ServerKey {
    /// The key of `epoch`, derived from the service's 32-byte seed with the
    /// RFC's DeriveKeyPair.
    pub fn derive(seed: &[u8; 32], epoch: u32) -> Result<ServerKey, OprfError> {
        ServerKey::from_seed(seed, &key_info(epoch))
    }

    /// DeriveKeyPair(seed, key_info) as RFC 9497 specifies.
    pub fn from_seed(seed: &[u8], key_info: &[u8]) -> Result<ServerKey, OprfError> {
        Ok(ServerKey { sk: poprf::derive_key(seed, key_info)? })
    }

    /// The public key, to publish: every node checks proofs against it.
    pub fn public_key(&self) -> [u8; ELEMENT] {
        (&self.sk * curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE).compress().to_bytes()
    }

    /// Evaluates a batch of blinded elements under public input `info`, with
    /// one proof for the whole batch.
    pub fn evaluate(
        &self,
        blinded: &[[u8; ELEMENT]],
        info: &[u8],
    ) -> Result<(Vec<[u8; ELEMENT]>, [u8; PROOF]), OprfError> {
        if blinded.is_empty() || blinded.len() > MAX_BATCH {
            return Err(OprfError::Batch);
        }
        poprf::evaluate(&self.sk, blinded, info, poprf::random_scalar())
    }

    /// The PRF value of `input` computed directly (no blinding): what a node
    /// ends up with. For tests and for checking a deployment.
    pub fn evaluate_direct(&self, input: &[u8], info: &[u8]) -> Result<[u8; OUTPUT], OprfError> {
        poprf::evaluate_direct(&self.sk, input, info)
    }
}

/// A node's blinded batch: the blinds (secret, kept by the node, zeroised on
/// drop) and the elements to send.
pub struct Blinded {
    blinds: Vec<Scalar>,
    points: Vec<curve25519_dalek::ristretto::RistrettoPoint>,
    /// The blinded elements, in input order, for the key service.
    pub elements: Vec<[u8; ELEMENT]>,
}

impl Drop for Blinded {
    fn drop(&mut self) {
        for b in &mut self.blinds {
            zeroize::Zeroize::zeroize(b);
        }
    }
}

impl std::fmt::Debug for Blinded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blinded {{ {} elements, blinds: <redacted> }}", self.elements.len())
    }
}

/// Blinds a batch of inputs with fresh random scalars.
pub fn blind(inputs: &[&[u8]]) -> Result<Blinded, OprfError> {
    blind_with(inputs, poprf::random_scalar)
}

fn blind_with(inputs: &[&[u8]], mut next: impl FnMut() -> Scalar) -> Result<Blinded, OprfError> {
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(OprfError::Batch);
    }
    if inputs.iter().any(|i| i.is_empty() || i.len() > u16::MAX as usize) {
        return Err(OprfError::Input);
    }
    let mut b = Blinded { blinds: inputs.iter().map(|_| next()).collect(), points: Vec::new(), elements: Vec::new() };
    let (elements, points) = poprf::blind(inputs, &b.blinds)?;
    b.elements = elements;
    b.points = points;
    Ok(b)
}

/// Verifies the key service's proof against its published key and the
/// public input, unblinds each evaluated element and hashes it with its
/// input into the output. Fails as a whole if the proof does not verify.
pub fn finalize(
    inputs: &[&[u8]],
    blinded: &Blinded,
    evaluated: &[[u8; ELEMENT]],
    proof: &[u8; PROOF],
    public_key: &[u8; ELEMENT],
    info: &[u8],
) -> Result<Vec<[u8; OUTPUT]>, OprfError> {
    if inputs.len() != blinded.blinds.len() || evaluated.len() != inputs.len() {
        return Err(OprfError::Batch);
    }
    poprf::finalize(inputs, &blinded.blinds, &blinded.elements, &blinded.points, evaluated, proof, public_key, info)
}

#[cfg(test)]
mod tests;
