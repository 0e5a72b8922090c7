//! vigil-node
