//! vigil-coordinator
